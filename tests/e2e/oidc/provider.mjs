// An OpenID Connect provider for Dash's end-to-end tests: `oidc-provider` (OpenID Certified)
// on 127.0.0.1:$PORT with one public client (`dash`, device flow and refresh tokens) and three
// accounts with groups. A fresh RSA signing key is made at each start, named $KID: starting it
// again with another KID is a key rotation. /test/approve?user_code=…&account=… stands for the
// person who signs in at the verification page and approves the device (the test's browser).
//
//   PORT=17790 KID=k1 ID_TTL=60 node provider.mjs      # prints "ready <issuer>" once listening
import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = {
  alice: ['devs'],
  bob: ['readers'],
  carol: ['visitors'],
  olga: ['ops', 'devs'],
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: process.env.KID || 'k1', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'dash',
    token_endpoint_auth_method: 'none',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
    response_types: [],
    redirect_uris: [],
  }],
  jwks: { keys: [jwk] },
  features: {
    deviceFlow: { enabled: true },
    devInteractions: { enabled: false },
  },
  scopes: ['openid', 'offline_access', 'groups'],
  claims: { openid: ['sub'], groups: ['groups'] },
  conformIdTokenClaims: false,
  ttl: {
    IdToken: Number(process.env.ID_TTL || 3600),
    AccessToken: Number(process.env.ID_TTL || 3600),
    DeviceCode: 600,
    RefreshToken: 86400,
    Grant: 86400,
  },
  async findAccount(ctx, id) {
    if (!accounts[id]) return undefined;
    return { accountId: id, async claims() { return { sub: id, groups: accounts[id] }; } };
  },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.path !== '/test/approve') return next();
  // As the verification page takes it: upper case, no separators.
  const userCode = String(ctx.query.user_code || '').toUpperCase().replace(/[^A-Z0-9]/g, '');
  const code = await provider.DeviceCode.findByUserCode(userCode);
  const account = String(ctx.query.account || '');
  if (!code || !accounts[account]) {
    ctx.status = 404;
    ctx.body = 'no such user code or account';
    return undefined;
  }
  // What the verification page's success does (device_user_flow_response.js), for the
  // scopes the device asked for.
  const scope = String(code.params.scope || 'openid');
  const grant = new provider.Grant({ accountId: account, clientId: code.clientId });
  grant.addOIDCScope(scope);
  grant.addOIDCClaims(['sub', 'groups']);
  Object.assign(code, {
    accountId: account,
    authTime: Math.floor(Date.now() / 1000),
    grantId: await grant.save(),
    scope,
    expiresWithSession: false,
  });
  await code.save();
  ctx.body = 'approved';
  return undefined;
});

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
