// Verifies the platform's Courtyard-Identity assertion with node:crypto alone, the way any
// language can: fetch the JWKS from COURTYARD_PLATFORM_URL + /oauth2/jwks, check the JWT.
// Checks (RFC 8725 §3.1-3.2, RFC 7519 §4.1): alg ES256 or RS256 only and matching the key, kid
// in the JWKS, signature, typ not an access token's, iss = the platform, aud = COURTYARD_APP,
// exp / iat / nbf within a few seconds of leeway.
"use strict";

const crypto = require("node:crypto");

const ALGORITHMS = new Set(["ES256", "RS256"]);
const LEEWAY_S = 5;
const MAX_TOKEN_BYTES = 16 * 1024;
const DEFAULT_MAX_AGE_S = 300; // when the JWKS response does not say (Cache-Control max-age)
const MAX_MAX_AGE_S = 86400;
const REFETCH_INTERVAL_MS = 30000; // an unknown kid refetches at most this often
const RETRY_INTERVAL_MS = 5000; // after a failed fetch
const FETCH_TIMEOUT_MS = 5000;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

class IdentityError extends Error {
  // status 401: the caller's assertion is missing or bad; 503: we cannot verify right now.
  constructor(message, status = 401) {
    super(message);
    this.status = status;
  }
}

// The public keys of a JWKS (RFC 7517 §5) we may verify with, by kid: EC P-256 and RSA only.
function parseJwks(document) {
  const keys = new Map();
  for (const jwk of Array.isArray(document && document.keys) ? document.keys : []) {
    if (!jwk || typeof jwk.kid !== "string" || (jwk.use !== undefined && jwk.use !== "sig")) {
      continue;
    }
    try {
      if (jwk.kty === "EC" && jwk.crv === "P-256" && [undefined, "ES256"].includes(jwk.alg)) {
        const key = crypto.createPublicKey({
          key: { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y },
          format: "jwk",
        });
        keys.set(jwk.kid, { alg: "ES256", key });
      } else if (jwk.kty === "RSA" && [undefined, "RS256"].includes(jwk.alg)) {
        const key = crypto.createPublicKey({
          key: { kty: "RSA", n: jwk.n, e: jwk.e },
          format: "jwk",
        });
        keys.set(jwk.kid, { alg: "RS256", key });
      }
    } catch {
      // A key we cannot read is a key we do not use.
    }
  }
  return keys;
}

function maxAgeSeconds(cacheControl) {
  if (!cacheControl) return DEFAULT_MAX_AGE_S;
  if (/no-store|no-cache/i.test(cacheControl)) return 0;
  const match = /(?:^|,)\s*max-age\s*=\s*"?(\d+)/i.exec(cacheControl);
  return match ? Number(match[1]) : DEFAULT_MAX_AGE_S;
}

// The platform's JWKS, cached for its max-age; refetched on an unknown kid at most once per
// REFETCH_INTERVAL_MS, so made-up kids cannot make us hammer the platform.
class JwksCache {
  constructor(url, now = Date.now) {
    this.url = url;
    this.now = now;
    this.keys = null;
    this.expiresAt = 0;
    this.lastAttempt = -Infinity;
    this.lastFailure = null;
    this.pending = null;
  }

  async key(kid) {
    if (this.pending) {
      await this.pending; // one fetch at a time; everyone waits for it
    } else if (this.shouldFetch(kid, this.now())) {
      this.pending = this.fetch().finally(() => {
        this.pending = null;
      });
      await this.pending;
    }
    if (this.keys === null) {
      throw new IdentityError(`cannot fetch the platform's keys: ${this.lastFailure}`, 503);
    }
    return this.keys.get(kid) || null;
  }

  shouldFetch(kid, now) {
    const since = now - this.lastAttempt;
    if (this.lastFailure !== null && since < RETRY_INTERVAL_MS) return false;
    if (this.keys === null || now >= this.expiresAt) return true;
    return !this.keys.has(kid) && since >= REFETCH_INTERVAL_MS;
  }

  async fetch() {
    this.lastAttempt = this.now();
    try {
      const response = await fetch(this.url, {
        headers: { Accept: "application/json" },
        redirect: "error",
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
      const document = await response.json();
      if (!document || !Array.isArray(document.keys)) throw new Error('no "keys" list');
      const ageS = maxAgeSeconds(response.headers.get("cache-control"));
      const keptMs = Math.min(Math.max(ageS * 1000, REFETCH_INTERVAL_MS), MAX_MAX_AGE_S * 1000);
      this.keys = parseJwks(document);
      this.expiresAt = this.now() + keptMs;
      this.lastFailure = null;
    } catch (error) {
      // Keys already known stay in use; with none, requests get 503 until a fetch works.
      this.lastFailure = String(error && error.message ? error.message : error);
    }
  }
}

const invalid = (reason) => new IdentityError(`invalid Courtyard-Identity assertion: ${reason}`);

// The JSON object a base64url part of a JWT holds (RFC 7515 §7.1), or an IdentityError.
function decodeJson(part) {
  if (BASE64URL.test(part)) {
    try {
      const value = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
      if (value && typeof value === "object" && !Array.isArray(value)) return value;
    } catch {
      // not JSON: refused below
    }
  }
  throw invalid("not a JWT");
}

const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
const isStrings = (value) =>
  Array.isArray(value) && value.every((item) => typeof item === "string");

// Verifies assertions made for `audience` (this app's name) by `issuer` (the platform's URL).
class IdentityVerifier {
  constructor(issuer, audience, { jwks, now = Date.now } = {}) {
    this.issuer = issuer;
    this.audience = audience;
    this.now = now;
    this.jwks = jwks || new JwksCache(`${issuer.replace(/\/+$/, "")}/oauth2/jwks`, now);
  }

  // The caller of the request `token` comes with; throws IdentityError.
  async verify(token) {
    if (typeof token !== "string" || !token || token.length > MAX_TOKEN_BYTES) {
      throw invalid("not a JWT");
    }
    const parts = token.split(".");
    if (parts.length !== 3) throw invalid("not a JWT");
    const [headerPart, payloadPart, signaturePart] = parts;
    const header = decodeJson(headerPart);
    if (!ALGORITHMS.has(header.alg)) {
      throw invalid(`algorithm ${JSON.stringify(header.alg)} is not allowed`);
    }
    if (header.typ === "at+jwt" || header.typ === "application/at+jwt") {
      throw invalid("an access token is not an identity assertion (typ)");
    }
    if (typeof header.kid !== "string" || !header.kid) {
      throw invalid("the token names no key (kid)");
    }
    const found = await this.jwks.key(header.kid);
    if (!found) throw invalid("unknown key");
    if (found.alg !== header.alg) throw invalid(`algorithm ${header.alg} does not match the key`);
    if (!BASE64URL.test(signaturePart)) throw invalid("not a JWT");
    const signature = Buffer.from(signaturePart, "base64url");
    const data = Buffer.from(`${headerPart}.${payloadPart}`, "ascii");
    const good =
      found.alg === "ES256"
        ? signature.length === 64 &&
          crypto.verify("sha256", data, { key: found.key, dsaEncoding: "ieee-p1363" }, signature)
        : crypto.verify("sha256", data, found.key, signature); // RSASSA-PKCS1-v1_5
    if (!good) throw invalid("bad signature");

    const claims = decodeJson(payloadPart);
    if (claims.iss !== this.issuer) throw invalid("issued by someone else than the platform (iss)");
    const audiences = typeof claims.aud === "string" ? [claims.aud] : claims.aud;
    if (!Array.isArray(audiences) || !audiences.includes(this.audience)) {
      throw invalid(`not meant for ${JSON.stringify(this.audience)} (aud)`);
    }
    const now = this.now() / 1000;
    const badNbf = claims.nbf !== undefined && !isNumber(claims.nbf);
    if (!isNumber(claims.exp) || !isNumber(claims.iat) || badNbf) {
      throw invalid("missing or invalid exp or iat");
    }
    if (claims.exp <= now - LEEWAY_S) throw invalid("expired");
    if (claims.iat > now + LEEWAY_S || (claims.nbf !== undefined && claims.nbf > now + LEEWAY_S)) {
      throw invalid("not valid yet (iat or nbf in the future)");
    }
    if (typeof claims.sub !== "string" || !claims.sub) throw invalid("missing sub");
    const { email = "", name = "", groups = [], roles = [] } = claims;
    if (typeof email !== "string" || typeof name !== "string") {
      throw invalid("invalid email or name");
    }
    if (!isStrings(groups) || !isStrings(roles)) throw invalid("invalid groups or roles");
    let act = null;
    if (claims.act !== undefined) {
      // RFC 8693 §4.1: the service that called through the mesh on the subject's behalf.
      if (!claims.act || typeof claims.act.sub !== "string" || !claims.act.sub) {
        throw invalid("invalid act");
      }
      act = claims.act.sub;
    }
    const displayName = name || email || claims.sub;
    return { sub: claims.sub, email, name, groups, roles, act, displayName };
  }
}

// A verifier for this app instance from the variables the platform gives it, or null (with
// the reason) when they are missing.
function fromEnvironment(env = process.env) {
  const issuer = (env.COURTYARD_PLATFORM_URL || "").replace(/\/+$/, "");
  const audience = env.COURTYARD_APP || "";
  if (!issuer || !audience) {
    return { verifier: null, reason: "COURTYARD_PLATFORM_URL and COURTYARD_APP must be set" };
  }
  // COURTYARD_JWKS_URL, when set, says where to fetch the keys instead of the issuer.
  const jwks = env.COURTYARD_JWKS_URL ? new JwksCache(env.COURTYARD_JWKS_URL) : undefined;
  return { verifier: new IdentityVerifier(issuer, audience, { jwks }), reason: null };
}

module.exports = { IdentityError, IdentityVerifier, JwksCache, fromEnvironment, parseJwks };
