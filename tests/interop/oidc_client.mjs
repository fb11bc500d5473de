// A certified third-party relying party (openid-client v6) run against a Courtyard node:
// discovery, authorization code + PKCE (RFC 7636) with state and nonce, userinfo, refresh,
// client credentials, introspection (RFC 7662) and revocation (RFC 7009).
//
// Usage: node oidc_client.mjs CONFIG_JSON   (or the JSON on stdin)
// CONFIG: {issuer, client: {id, secret, redirectUri}, service: {id, secret},
//          user: {email, password, totpSecret?}, scope?}
// Prints one JSON object with each step's result; exits 1 with {ok: false, step, error}.
import crypto from "node:crypto";
import * as client from "openid-client";

const results = {};
let currentStep = "config";

async function step(name, action) {
  currentStep = name;
  const value = await action();
  results[name] = value;
  return value;
}

function fail(message) {
  throw new Error(message);
}

async function readConfig() {
  if (process.argv[2]) return JSON.parse(process.argv[2]);
  let text = "";
  for await (const chunk of process.stdin) text += chunk;
  return JSON.parse(text);
}

// -- a minimal browser: cookies and forms over fetch, redirects followed by hand --------------

class CookieJar {
  constructor() {
    this.cookies = new Map();
  }
  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";");
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a));
      if (expired || value === "") this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}

function decodeEntities(text) {
  return text
    .replace(/&#x([0-9a-f]+);/gi, (_, hex) => String.fromCodePoint(parseInt(hex, 16)))
    .replace(/&#(\d+);/g, (_, dec) => String.fromCodePoint(Number(dec)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

function attributes(tag) {
  const out = {};
  const pattern = /([a-zA-Z_:-]+)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g;
  for (const match of tag.replace(/^<\w+/, "").matchAll(pattern)) {
    out[match[1].toLowerCase()] = decodeEntities(match[2] ?? match[3] ?? match[4] ?? "");
  }
  return out;
}

// The first form on the page with a field called `fieldName`: {action, fields}.
function formWith(page, fieldName) {
  for (const [, open, body] of page.matchAll(/(<form\b[^>]*>)([\s\S]*?)<\/form>/gi)) {
    const fields = {};
    for (const [tag] of body.matchAll(/<input\b[^>]*>/gi)) {
      const a = attributes(tag);
      if (a.name && a.type !== "submit" && a.type !== "button") fields[a.name] = a.value ?? "";
    }
    if (fieldName in fields) return { action: attributes(open).action ?? "", fields };
  }
  return null;
}

class Browser {
  constructor(origin) {
    this.origin = origin;
    this.jar = new CookieJar();
    this.hops = [];
  }
  async request(url, init = {}) {
    const headers = new Headers(init.headers ?? {});
    headers.set("accept", "text/html,application/xhtml+xml");
    const cookies = this.jar.header();
    if (cookies) headers.set("cookie", cookies);
    const response = await fetch(url, { ...init, headers, redirect: "manual" });
    this.jar.store(response);
    const location = response.headers.get("location");
    this.hops.push(`${init.method ?? "GET"} ${new URL(url).pathname} -> ${response.status}`);
    return { response, location: location ? new URL(location, url).href : null };
  }
  async submit(pageUrl, form, values) {
    const action = new URL(form.action || pageUrl, pageUrl).href;
    return this.request(action, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: this.origin },
      body: new URLSearchParams({ ...form.fields, ...values }).toString(),
    });
  }
}

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s), for a user enrolled with a second factor.
function totp(secretBase32, step) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of secretBase32.replace(/=+$/, "").toUpperCase()) {
    bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, "0");
}

// GET the authorization URL, sign in on /login (and /login/totp), follow the redirects back
// through /oauth2/authorize until the Location is the redirect_uri; return that URL.
async function signInAndAuthorize(authorizationUrl, redirectUri, user) {
  const browser = new Browser(new URL(authorizationUrl).origin);
  let { response, location } = await browser.request(authorizationUrl);
  for (let hops = 0; hops < 12; hops++) {
    if (location?.startsWith(redirectUri)) return { callback: location, hops: browser.hops };
    if (!location) {
      const page = await response.text();
      const url = response.url;
      const passwordForm = formWith(page, "password");
      const codeForm = formWith(page, "code");
      if (response.status === 200 && passwordForm) {
        if (!passwordForm.fields.csrf) fail("the login form has no hidden csrf field");
        if (!browser.jar.header()) fail("GET /login set no cookie (the CSRF cookie is missing)");
        ({ response, location } = await browser.submit(url, passwordForm, {
          email: user.email,
          password: user.password,
        }));
        if (!location && formWith(await response.clone().text(), "password")) {
          fail(`sign-in refused (${response.status}): the password form came back`);
        }
        continue;
      }
      if (response.status === 200 && codeForm) {
        if (!user.totpSecret) fail("the node asks for a TOTP code but the user has none");
        const code = totp(user.totpSecret, Math.floor(Date.now() / 1000 / 30));
        ({ response, location } = await browser.submit(url, codeForm, { code }));
        continue;
      }
      fail(`stuck at ${url} (${response.status}): ${page.slice(0, 500)}`);
    }
    ({ response, location } = await browser.request(location));
  }
  fail(`no redirect to ${redirectUri}: ${browser.hops.join(", ")}`);
}

function jwtClaims(token) {
  const [, payload] = token.split(".");
  return JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
}

async function expectError(name, action) {
  try {
    await action();
  } catch (error) {
    return { refused: true, error: error.error ?? error.code ?? error.name };
  }
  fail(`${name} succeeded but should have been refused`);
}

async function main() {
  const config = await readConfig();
  const scope = config.scope ?? "openid profile email offline_access";
  const insecure = { execute: [client.allowInsecureRequests] }; // http:// issuer on loopback

  const rp = await step("discovery", async () => {
    const configuration = await client.discovery(
      new URL(config.issuer),
      config.client.id,
      config.client.secret,
      undefined,
      insecure,
    );
    const metadata = configuration.serverMetadata();
    return {
      configuration,
      issuer: metadata.issuer,
      authorization_endpoint: metadata.authorization_endpoint,
      token_endpoint: metadata.token_endpoint,
      userinfo_endpoint: metadata.userinfo_endpoint,
      jwks_uri: metadata.jwks_uri,
      introspection_endpoint: metadata.introspection_endpoint,
      revocation_endpoint: metadata.revocation_endpoint,
      end_session_endpoint: metadata.end_session_endpoint,
      code_challenge_methods_supported: metadata.code_challenge_methods_supported,
      id_token_signing_alg_values_supported: metadata.id_token_signing_alg_values_supported,
      grant_types_supported: metadata.grant_types_supported,
    };
  }).then((value) => {
    const { configuration, ...printable } = value;
    results.discovery = printable;
    return configuration;
  });

  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = await step("authorizationUrl", async () => {
    const challenge = await client.calculatePKCECodeChallenge(verifier);
    return client
      .buildAuthorizationUrl(rp, {
        redirect_uri: config.client.redirectUri,
        scope,
        code_challenge: challenge,
        code_challenge_method: "S256",
        state,
        nonce,
      })
      .toString();
  });

  const login = await step("login", () =>
    signInAndAuthorize(authorizationUrl, config.client.redirectUri, config.user),
  );

  const tokens = await step("authorizationCodeGrant", async () => {
    const response = await client.authorizationCodeGrant(rp, new URL(login.callback), {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    return response;
  }).then((response) => {
    const claims = response.claims();
    results.authorizationCodeGrant = {
      token_type: response.token_type,
      expires_in: response.expiresIn(),
      scope: response.scope,
      has_refresh_token: Boolean(response.refresh_token),
      id_token_header: JSON.parse(
        Buffer.from(response.id_token.split(".")[0], "base64url").toString("utf8"),
      ),
      id_token: claims,
      access_token: jwtClaims(response.access_token),
    };
    return response;
  });
  const subject = tokens.claims().sub;

  await step("userinfo", () => client.fetchUserInfo(rp, tokens.access_token, subject));

  const refreshed = await step("refreshTokenGrant", () =>
    client.refreshTokenGrant(rp, tokens.refresh_token),
  ).then((response) => {
    results.refreshTokenGrant = {
      token_type: response.token_type,
      expires_in: response.expiresIn(),
      rotated: Boolean(response.refresh_token) && response.refresh_token !== tokens.refresh_token,
      access_token: jwtClaims(response.access_token),
      id_token: response.id_token ? response.claims() : null,
    };
    return response;
  });

  const service = await client.discovery(
    new URL(config.issuer),
    config.service.id,
    config.service.secret,
    undefined,
    insecure,
  );
  const serviceTokens = await step("clientCredentialsGrant", () =>
    client.clientCredentialsGrant(service, config.service.scope ? { scope: config.service.scope } : {}),
  ).then((response) => {
    results.clientCredentialsGrant = {
      token_type: response.token_type,
      expires_in: response.expiresIn(),
      has_refresh_token: Boolean(response.refresh_token),
      access_token: jwtClaims(response.access_token),
    };
    return response;
  });

  await step("serviceIntrospection", () =>
    client.tokenIntrospection(service, serviceTokens.access_token),
  );
  await step("introspection", () => client.tokenIntrospection(rp, refreshed.access_token));
  await step("revocation", async () => {
    await client.tokenRevocation(rp, refreshed.access_token);
    return { revoked: "access_token" };
  });
  await step("introspectionAfterRevocation", () =>
    client.tokenIntrospection(rp, refreshed.access_token),
  );
  // After the checks above: reuse detection may revoke the whole family (RFC 9700 §4.14.2).
  await step("reusedRefreshToken", () =>
    expectError("reusing a rotated refresh token", () =>
      client.refreshTokenGrant(rp, tokens.refresh_token),
    ),
  );
  await step("refreshRevocation", async () => {
    await client.tokenRevocation(rp, refreshed.refresh_token);
    return { revoked: "refresh_token" };
  });
  await step("refreshAfterRevocation", () =>
    expectError("refreshing with a revoked refresh token", () =>
      client.refreshTokenGrant(rp, refreshed.refresh_token),
    ),
  );
  await step("endSessionUrl", async () =>
    results.discovery.end_session_endpoint
      ? client.buildEndSessionUrl(rp, { id_token_hint: tokens.id_token }).toString()
      : null,
  );
  return results;
}

try {
  const output = await main();
  process.stdout.write(`${JSON.stringify({ ok: true, ...output }, null, 2)}\n`);
} catch (error) {
  const detail = {
    ok: false,
    step: currentStep,
    error: String(error?.message ?? error),
    code: error?.code,
    oauthError: error?.error,
    description: error?.error_description,
    status: error?.status,
    cause: error?.cause ? String(error.cause?.message ?? error.cause) : undefined,
    results,
  };
  process.stdout.write(`${JSON.stringify(detail, null, 2)}\n`);
  process.stderr.write(`oidc_client: step ${currentStep} failed: ${detail.error}\n`);
  process.exitCode = 1;
}
