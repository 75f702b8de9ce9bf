//! What the OpenAPI document says beyond what each handler declares.
//!
//! Errors: each operation lists the errors it can answer with, in the API's error shape: 400
//! where it takes input (a body or query parameters) that can be malformed or invalid, 401
//! where it needs a token, 404 where it names something by id, and 403 and 409 where its
//! service call can refuse or find the state in the way (the tables below, by operation id).
//!
//! Input: a body whose fields are all optional may be left out (the API reads an empty body as
//! `{}`), and the query parameters with a fixed set of values list them, from core's own lists.
//!
//! The suite runs schemathesis against the document (tests/it/openapi.rs).

use jitgate_core::{Outcome, State};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{Object, Schema, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder};

/// Operations that can answer 400 although their input is well formed, and when.
const INVALID: &[(&str, &str)] = &[
    (
        "credentials",
        "the grant's resource hands out no credentials (kind none, or a shared upstream login)",
    ),
    (
        "logout",
        "the token is configured in jitgate.toml, not a session: it cannot be signed out",
    ),
];

/// Operations whose service call can refuse the caller (403), and when.
const REFUSES: &[(&str, &str)] = &[
    (
        "create_request",
        "refused by policy (default deny, a limit broken, access already held): the message names the rule",
    ),
    (
        "approve",
        "the caller may not approve it (not an eligible approver, or the requester)",
    ),
    (
        "deny",
        "the caller may not deny it (not an eligible approver)",
    ),
    ("cancel", "only the requester may cancel"),
    ("release", "only the holder may release"),
    ("revoke", "admins only"),
    (
        "extend",
        "only the holder may extend, and a policy must allow the extension",
    ),
    (
        "review",
        "admins or the policy's approvers only, never the holder",
    ),
    ("credentials", "only the grantee may read them"),
    (
        "erase",
        "admins only, and not while a legal hold covers the data",
    ),
    ("rotate_key", "admins only"),
    ("create_hold", "admins only"),
    ("list_holds", "admins and auditors only"),
    ("release_hold", "admins only"),
    ("end", "admins only"),
];

/// Operations that can find the request, grant or hold in a state that does not allow them (409).
const CONFLICTS: &[(&str, &str)] = &[
    (
        "approve",
        "the request (or its extension) is no longer pending",
    ),
    (
        "deny",
        "the request (or its extension) is no longer pending",
    ),
    ("cancel", "the request has started or ended"),
    ("release", "the grant is not active"),
    ("revoke", "the grant is not active"),
    (
        "extend",
        "the grant is not active, or an extension already waits",
    ),
    ("review", "not a break-glass grant, or already reviewed"),
    ("credentials", "the grant is not active"),
    ("release_hold", "the hold is already released"),
];

/// Adds the error answers each operation can give; descriptions written on an operation itself
/// are kept.
pub struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, doc: &mut OpenApi) {
        let optional_bodies = all_optional_schemas(doc);
        for (path, item) in doc.paths.paths.iter_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                add_errors(path, op);
                list_values(op);
                if let Some(body) = op.request_body.as_mut()
                    && body.content.values().any(|c| {
                        matches!(&c.schema, Some(RefOr::Ref(r)) if optional_bodies.iter().any(|n| r.ref_location.ends_with(&format!("/{n}"))))
                    })
                {
                    body.required = Some(Required::False);
                }
            }
        }
    }
}

/// What a created request's answer leads to: the operations that take its `id`, and those that
/// take its `grant_id`. Clients (and a stateful fuzzer) follow these links.
const LINKS: &[(&str, &str)] = &[
    ("get_request", "$response.body#/id"),
    ("approve", "$response.body#/id"),
    ("deny", "$response.body#/id"),
    ("cancel", "$response.body#/id"),
    ("get_grant", "$response.body#/grant_id"),
    ("release", "$response.body#/grant_id"),
    ("revoke", "$response.body#/grant_id"),
    ("extend", "$response.body#/grant_id"),
    ("review", "$response.body#/grant_id"),
    ("credentials", "$response.body#/grant_id"),
];

/// The document as served: utoipa's, with the links of [`LINKS`] added as JSON (utoipa 5
/// writes a link's `operationId` as `operation_id`, which no client reads).
pub fn document(doc: OpenApi) -> serde_json::Value {
    let mut v = serde_json::to_value(doc).expect("the OpenAPI document serialises");
    let created = &mut v["paths"]["/api/v1/requests"]["post"]["responses"]["201"];
    if created.is_object() {
        let links: serde_json::Map<String, serde_json::Value> = LINKS
            .iter()
            .map(|(target, id)| {
                let link = serde_json::json!({ "operationId": target, "parameters": { "id": id } });
                ((*target).to_owned(), link)
            })
            .collect();
        created["links"] = links.into();
    }
    v
}

/// The component schemas none of whose fields is required.
fn all_optional_schemas(doc: &OpenApi) -> Vec<String> {
    doc.components
        .iter()
        .flat_map(|c| c.schemas.iter())
        .filter(|(_, s)| matches!(s, RefOr::T(Schema::Object(o)) if o.required.is_empty()))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Query parameters with a fixed set of values say which; `limit` says its true range.
fn list_values(op: &mut Operation) {
    // Search and export share one query type; only export takes `format`.
    if op.operation_id.as_deref() != Some("export")
        && let Some(params) = op.parameters.as_mut()
    {
        params.retain(|p| p.name != "format");
    }
    for p in op.parameters.iter_mut().flatten() {
        if !matches!(p.parameter_in, ParameterIn::Query) {
            continue;
        }
        if p.name == "limit" {
            // A u32, not the int32 the derived schema claims.
            let mut schema = Object::with_type(SchemaType::Type(Type::Integer));
            schema.minimum = Some(0.into());
            schema.maximum = Some(u32::MAX.into());
            p.schema = Some(RefOr::T(Schema::Object(schema)));
            continue;
        }
        let values: Vec<&str> = match p.name.as_str() {
            "state" => State::ALL.iter().map(|s| s.as_str()).collect(),
            "outcome" => Outcome::ALL.iter().map(|o| o.as_str()).collect(),
            "format" => vec!["jsonl", "csv"],
            _ => continue,
        };
        let mut schema = Object::with_type(SchemaType::Type(Type::String));
        schema.enum_values = Some(values.into_iter().map(Into::into).collect());
        p.schema = Some(RefOr::T(Schema::Object(schema)));
    }
}

fn add_errors(path: &str, op: &mut Operation) {
    let id = op.operation_id.clone().unwrap_or_default();
    let takes_input = op.request_body.is_some()
        || op
            .parameters
            .iter()
            .flatten()
            .any(|p| !matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path));
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let lookup = |table: &[(&str, &'static str)]| {
        table
            .iter()
            .find(|(name, _)| *name == id)
            .map(|(_, why)| *why)
    };
    let errors = [
        (
            "400",
            lookup(INVALID)
                .or(takes_input.then_some("malformed or invalid input (invalid_argument)")),
        ),
        (
            "401",
            secured.then_some("no token, or not a known one (unauthenticated)"),
        ),
        ("403", lookup(REFUSES)),
        (
            "404",
            path.contains('{')
                .then_some("no such id, or not visible to the caller (not_found)"),
        ),
        ("409", lookup(CONFLICTS)),
    ];
    for (status, why) in errors {
        if let Some(why) = why {
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| error_response(why).into());
        }
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}
