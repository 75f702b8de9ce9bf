// A real OpenID provider (the npm package oidc-provider) for jitgate's tests: one confidential
// client "jitgate", the device flow, and a `groups` claim read afresh from GROUPS_FILE at every
// sign-in, so a test can take a person out of a group at the provider.
//
// It signs with an RSA key made at each start, so a restart on the same port is a key rotation.
//
// Usage: node provider.mjs PORT REDIRECT_URL GROUPS_FILE
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const [port, redirect, groupsFile] = process.argv.slice(2);
const groups = (id) => JSON.parse(readFileSync(groupsFile, 'utf8'))[id] ?? [];

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  jwks: { keys: [signingKey] },
  clients: [{
    client_id: 'jitgate',
    client_secret: 'test-secret',
    redirect_uris: [redirect],
    grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  // Claims in the ID token itself, as Okta, Entra ID and Keycloak can be set to do.
  conformIdTokenClaims: false,
  pkce: { required: () => false },
  cookies: { keys: ['jitgate-test-only'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@example.com`,
      email_verified: true,
      name: id,
      groups: groups(id),
    }),
  }),
});
provider.proxy = false;
provider.listen(Number(port), () => console.log(`listening ${port}`));
