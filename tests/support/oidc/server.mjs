// A real OAuth 2.0 authorization server for the tests: panva's oidc-provider (OpenID-certified),
// configured only for what the sidecar meets in production: machine clients getting access tokens
// by the client-credentials grant, opaque or JWT (RFC 9068), introspected (RFC 7662), revoked
// (RFC 7009), bound to a DPoP key (RFC 9449) or to a client certificate (RFC 8705).
//
//   node server.mjs CONFIG.json
//
// The test writes CONFIG.json (tests/support/oidc/__init__.py): the port, the signing keys, the
// clients and the resource servers. Restarting with another `jwks` there is a key rotation.
// It prints one line "oidc-provider ready <issuer>" once it accepts connections.
//
// oidc-provider 9 officially supports Node 22+ LTS and warns on Node 20, where it runs: what it
// needs from the runtime (URL.parse, crypto.hash) exists since Node 20.18, hence package.json.

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

import { FileBackedAdapter, load, save } from './store.mjs';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;

// The client certificate arrives in a request header (URL-encoded PEM, the encoding Envoy uses for
// a forwarded peer certificate) because the tests do not terminate TLS at the provider. Trusting a
// header like this is only acceptable on loopback behind a proxy that strips it — i.e. in tests.
function getCertificate(ctx) {
  const value = ctx.get(config.clientCertHeader);
  if (!value) return undefined;
  try {
    return new crypto.X509Certificate(decodeURIComponent(value));
  } catch {
    return undefined; // reported to the client as "mutual TLS client certificate not provided"
  }
}

// Resource indicators (RFC 8707) choose, per requested `resource`, the token's audience, the scopes
// it may carry, its lifetime and its format: 'opaque' (only introspection can read it) or 'jwt'.
function getResourceServerInfo(ctx, resource) {
  const server = config.resources[resource];
  if (!server) throw new errors.InvalidTarget(`unknown resource ${resource}`);
  return {
    audience: server.audience,
    scope: server.scope,
    accessTokenTTL: server.ttl,
    accessTokenFormat: server.format,
    // Without an explicit alg oidc-provider signs with its id_token default (RS256).
    ...(server.format === 'jwt' && server.alg ? { jwt: { sign: { alg: server.alg } } } : {}),
  };
}

load(config.storeFile);

const provider = new Provider(issuer, {
  adapter: FileBackedAdapter,
  jwks: config.jwks,
  clients: config.clients,
  scopes: config.scopes,
  // Random per process: no browser sessions are used, this only silences the dev-keys warning.
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  // A resource server's own lifetime wins; tokens without a resource get the default.
  ttl: {
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? config.defaultTtl,
  },
  features: {
    clientCredentials: { enabled: true },
    // No login pages: the tests only use machine-to-machine grants.
    devInteractions: { enabled: false },
    introspection: {
      enabled: true,
      // A resource server (the sidecar) introspects tokens issued to other clients: any
      // authenticated confidential client may introspect, as at most real providers.
      allowedPolicy: (ctx, client) => client.clientAuthMethod !== 'none',
    },
    revocation: {
      enabled: true,
      // RFC 7009 section 2.1: a client revokes only the tokens issued to it, and is told so.
      allowedPolicy: (ctx, client, token) => {
        if (token.clientId !== client.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
    resourceIndicators: {
      enabled: true,
      // No `resource` parameter: no resource server, hence an opaque token without audience.
      defaultResource: () => undefined,
      getResourceServerInfo,
      useGrantedResource: () => false,
    },
    // A DPoP proof on the token request binds the token (cnf.jkt). With `dpopNonce` the provider
    // also demands a server nonce (use_dpop_nonce), which the nonce secret makes verifiable.
    dPoP: {
      enabled: true,
      ...(config.dpopNonce
        ? { nonceSecret: crypto.randomBytes(32), requireNonce: () => true }
        : {}),
    },
    // Certificate-bound tokens only: clients still authenticate with their secret, and those
    // registered with tls_client_certificate_bound_access_tokens get cnf["x5t#S256"].
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      getCertificate,
    },
  },
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider ready ${issuer}`);
});
server.on('error', (err) => {
  console.error(`cannot listen on 127.0.0.1:${config.port}: ${err.message}`);
  process.exit(1);
});

// A graceful stop keeps the issued tokens for the next start (store.mjs).
process.on('SIGTERM', () => {
  save(config.storeFile);
  process.exit(0);
});
