//! Workload identity against an issuer served on 127.0.0.1 by the test.

mod workload;
