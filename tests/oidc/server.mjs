// A real authorization server for the gateway's OAuth tests: oidc-provider (a certified
// OpenID Connect provider) on a free loopback port, issuing JWT access tokens by the client
// credentials grant with resource indicators (RFC 8707), or opaque ones to introspect
// (RFC 7662) for the resources a test names, and revoking tokens (RFC 7009).
//
// It binds 127.0.0.1:0 itself and prints one line, {"issuer": "http://127.0.0.1:<port>"},
// once it answers. Besides the provider's own endpoints, /test/* lets a test:
//   POST /test/rotate         publish a new signing key first (new kid), keep the old one
//   POST /test/retire         stop publishing every key but the newest (a withdrawn key)
//   POST /test/mint           sign arbitrary claims: {"claims": {...}, "key": "current" |
//                             "stranger" (a key the provider never published), "kid": "..."}
//   GET  /test/jwks-requests  how often the key set (/jwks) was fetched
//   POST /test/opaque         {"resource": "..."}: access tokens for it are opaque from now on
//                             (introspect them at /token/introspection as "gateway")
//   GET  /test/introspection-requests  how often /token/introspection was asked
//   GET  /test/exchange-requests  how often a token exchange (RFC 8693) was asked for
//
// Token exchange (RFC 8693): the client "upstream-gateway" (HTTP Basic) may trade an access
// token of this issuer (subject_token) for a JWT for the resource it names, whose sub is the
// subject token's and whose act.sub is that client.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import * as jose from 'jose';

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

let generation = 0;
async function newKey() {
  generation += 1;
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid: `key-${generation}`, alg: 'RS256', use: 'sig' };
}

const SCOPES = 'mcp:tools incidents';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const clients = [
  // May have every scope.
  { client_id: 'mcp-client', client_secret: 'mcp-secret', scope: SCOPES },
  // May have mcp:tools only: meets the 403 step-up challenge on an agent needing more.
  { client_id: 'narrow-client', client_secret: 'narrow-secret', scope: 'mcp:tools' },
  // The gateway itself, introspecting opaque tokens with HTTP Basic (client_secret_basic).
  {
    client_id: 'gateway', client_secret: 'gateway-secret',
    token_endpoint_auth_method: 'client_secret_basic',
  },
  // The gateway toward upstream MCP servers: its own tokens, and tokens for its callers.
  {
    client_id: 'upstream-gateway', client_secret: 'upstream-secret', scope: SCOPES,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials', TOKEN_EXCHANGE],
  },
].map((c) => ({
  token_endpoint_auth_method: 'client_secret_post',
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  ...c,
}));
// Resources whose access tokens are opaque (POST /test/opaque).
const opaqueResources = new Set();

function provider(keys) {
  return new Provider(issuer, {
    clients,
    jwks: { keys },
    scopes: ['openid', ...SCOPES.split(' ')],
    // Opaque client credentials tokens live this long (set, so no notice is printed).
    ttl: { ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        // Every resource is one of the gateway's: its access tokens are JWTs for it, or
        // opaque ones for the resources named by POST /test/opaque.
        getResourceServerInfo: (_ctx, resource) => (opaqueResources.has(resource)
          ? {
            scope: SCOPES, audience: resource, accessTokenTTL: 300, accessTokenFormat: 'opaque',
          }
          : {
            scope: SCOPES,
            audience: resource,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          }),
      },
    },
  });
}

// RFC 8693: the subject token must be one of this issuer's (signed by a published key, not
// expired); the new token is for the requested resource, for the same subject, acted by the
// client that asked.
async function tokenExchange(ctx) {
  exchangeRequests += 1;
  const { params, client } = ctx.oidc;
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
  }
  if (!params.subject_token) throw new errors.InvalidRequest('missing subject_token');
  const published = keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub);
  let subject;
  try {
    ({ payload: subject } = await jose.jwtVerify(
      params.subject_token,
      jose.createLocalJWKSet({ keys: published }),
      { issuer },
    ));
  } catch (e) {
    throw new errors.CustomOIDCProviderError('invalid_grant', `subject_token is not valid (${e.code ?? e.message})`);
  }
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer,
    sub: subject.sub ?? subject.client_id,
    aud: params.resource ?? params.audience,
    client_id: client.clientId,
    act: { sub: client.clientId },
    scope: params.scope,
    iat: now,
    exp: now + 300,
    jti: randomUUID(),
  };
  const token = await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: keys[0].kid })
    .sign(await jose.importJWK(keys[0], 'RS256'));
  ctx.body = {
    access_token: token,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: 300,
    ...(params.scope ? { scope: params.scope } : {}),
  };
}

function withTokenExchange(p) {
  p.registerGrantType(
    TOKEN_EXCHANGE,
    tokenExchange,
    ['subject_token', 'subject_token_type', 'requested_token_type', 'resource', 'audience', 'scope'],
    ['resource', 'audience'],
  );
  return p;
}

let exchangeRequests = 0;
let keys = [await newKey()];
let current = withTokenExchange(provider(keys)).callback();
let jwksRequests = 0;
let introspectionRequests = 0;

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {};
}

function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

async function control(req, res) {
  const path = req.url.split('?')[0];
  if (req.method === 'GET' && path === '/test/jwks-requests') {
    return json(res, 200, { count: jwksRequests });
  }
  if (req.method === 'GET' && path === '/test/introspection-requests') {
    return json(res, 200, { count: introspectionRequests });
  }
  if (req.method === 'GET' && path === '/test/exchange-requests') {
    return json(res, 200, { count: exchangeRequests });
  }
  if (req.method === 'POST' && path === '/test/opaque') {
    const { resource } = await body(req);
    opaqueResources.add(resource);
    return json(res, 200, { opaque: [...opaqueResources] });
  }
  if (req.method === 'POST' && path === '/test/rotate') {
    keys = [await newKey(), ...keys];
    current = withTokenExchange(provider(keys)).callback();
    return json(res, 200, { kid: keys[0].kid });
  }
  if (req.method === 'POST' && path === '/test/retire') {
    keys = [keys[0]];
    current = withTokenExchange(provider(keys)).callback();
    return json(res, 200, { kids: keys.map((k) => k.kid) });
  }
  if (req.method === 'POST' && path === '/test/mint') {
    const { claims = {}, key = 'current', kid } = await body(req);
    const signer = key === 'stranger' ? (await newKey()) : keys[0];
    const now = Math.floor(Date.now() / 1000);
    const token = await new jose.SignJWT({ iss: issuer, iat: now, exp: now + 300, ...claims })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: kid ?? keys[0].kid })
      .sign(await jose.importJWK(signer, 'RS256'));
    return json(res, 200, { token });
  }
  return json(res, 404, { error: `no test endpoint ${req.method} ${path}` });
}

server.on('request', (req, res) => {
  if (req.url.startsWith('/test/')) {
    control(req, res).catch((e) => json(res, 500, { error: String(e) }));
    return;
  }
  if (req.url.split('?')[0] === '/jwks') jwksRequests += 1;
  if (req.url.split('?')[0] === '/token/introspection') introspectionRequests += 1;
  current(req, res);
});

// The test reads the first line only and may close the pipe: later writes (oidc-provider's
// notices) must not kill the server.
process.stdout.on('error', () => {});
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
// Ends with the test that started it: its stdin closes when that process exits.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
