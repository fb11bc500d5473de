// Status board: a demo Node.js app (only built-in modules) that Courtyard runs.
// It reads PORT and COURTYARD_REVISION from the environment and shuts down cleanly on SIGTERM.
// Every request but /healthz must carry the platform's Courtyard-Identity assertion, verified
// against the platform's JWKS (identity.js); the page greets the caller by name.
"use strict";

const http = require("node:http");
const { IdentityError, fromEnvironment } = require("./identity");

const APP_NAME = "status-board";
const SHUTDOWN_GRACE_MS = 5000;
// A prefix is echoed into HTML, so accept only plain path characters.
const SAFE_PREFIX = /^(\/[A-Za-z0-9._~-]+)+$/;

const port = Number.parseInt(process.env.PORT || "8000", 10);
const revision = process.env.COURTYARD_REVISION || "dev";
// Paths the platform's health checks call directly, without an assertion.
const OPEN_PATHS = new Set(["/healthz"]);

const { verifier, reason } = fromEnvironment();
if (verifier === null) {
  console.error(`${APP_NAME}: ${reason}`);
  process.exit(2);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function forwardedPrefix(req) {
  const prefix = (req.headers["x-forwarded-prefix"] || "").replace(/\/+$/, "");
  return SAFE_PREFIX.test(prefix) ? prefix : "";
}

function send(res, status, contentType, body, headers = {}) {
  const payload = Buffer.from(body);
  res.writeHead(status, {
    "Content-Type": contentType,
    "Content-Length": payload.length,
    ...headers,
  });
  res.end(payload);
}

function sendJson(res, status, data) {
  send(res, status, "application/json", JSON.stringify(data));
}

// A problem document (RFC 9457).
function sendProblem(res, status, detail, headers = {}) {
  const body = { type: "about:blank", title: http.STATUS_CODES[status], status, detail };
  send(res, status, "application/problem+json", JSON.stringify(body), headers);
}

function status() {
  return { app: APP_NAME, revision, uptime: Math.round(process.uptime() * 1000) / 1000 };
}

function renderHome(prefix, identity) {
  const s = status();
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fleet status board</title></head>
<body>
<h1>Fleet status board</h1>
<p class="greeting">Hello, ${escapeHtml(identity.displayName)}</p>
<p>Revision <code>${escapeHtml(s.revision)}</code>, up ${s.uptime.toFixed(1)} s</p>
<p><a href="${escapeHtml(prefix)}/api/status">JSON status</a> ·
<a href="${escapeHtml(prefix)}/healthz">health</a></p>
</body></html>
`;
}

function me(identity) {
  const { sub, email, name, groups, roles, act } = identity;
  return { greeting: `Hello, ${identity.displayName}`, sub, email, name, groups, roles, act };
}

const routes = {
  "/healthz": (req, res) => sendJson(res, 200, { status: "ok" }),
  "/": (req, res, identity) =>
    send(res, 200, "text/html; charset=utf-8", renderHome(forwardedPrefix(req), identity)),
  "/api/status": (req, res) => sendJson(res, 200, status()),
  "/api/me": (req, res, identity) => sendJson(res, 200, me(identity)),
};

// The caller, or an IdentityError (401: missing or bad assertion; 503: keys out of reach).
async function authenticate(req) {
  const token = req.headers["courtyard-identity"];
  if (!token) throw new IdentityError("the request carries no Courtyard-Identity assertion");
  // Node joins repeated headers with ", "; a JWT never holds a comma.
  if (token.includes(",")) throw new IdentityError("the request carries more than one assertion");
  return verifier.verify(token.trim());
}

function refuse(res, error) {
  if (!(error instanceof IdentityError)) {
    console.error(error);
    sendProblem(res, 500, "internal error");
  } else if (error.status === 503) {
    sendProblem(res, 503, "the app cannot verify identities right now", { "Retry-After": "5" });
  } else {
    const challenge = { "WWW-Authenticate": 'Courtyard-Identity realm="courtyard"' };
    sendProblem(res, 401, error.message, challenge);
  }
}

function handleRequest(req, res) {
  const started = process.hrtime.bigint();
  res.on("finish", () => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    // One line per request on stdout, as the platform collects it.
    console.log(`${req.socket.remoteAddress} "${req.method} ${req.url} HTTP/${req.httpVersion}" ` +
      `${res.statusCode} ${ms.toFixed(1)}ms`);
  });
  req.resume(); // drain any body so the keep-alive connection stays usable
  const path = new URL(req.url, "http://localhost").pathname;
  const identity = OPEN_PATHS.has(path) ? Promise.resolve(null) : authenticate(req);
  identity.then(
    (caller) => {
      const route = routes[path];
      if (!route) {
        sendProblem(res, 404, `no route for ${path}`);
      } else if (req.method !== "GET" && req.method !== "HEAD") {
        sendProblem(res, 405, `${req.method} is not allowed on ${path}`, { Allow: "GET, HEAD" });
      } else {
        route(req, res, caller);
      }
    },
    (error) => refuse(res, error),
  ).catch((error) => {
    console.error(error);
    if (res.headersSent) res.destroy();
    else sendProblem(res, 500, "internal error");
  });
}

const server = http.createServer(handleRequest);
server.keepAliveTimeout = 30000; // outlive a gateway's pooled idle connections

function handleSigterm() {
  console.log(`${APP_NAME} stopping`);
  // close() stops accepting and, since Node 19, drops idle keep-alive connections.
  server.close(() => {
    console.log(`${APP_NAME} stopped`);
    process.exit(0);
  });
  setTimeout(() => {
    server.closeAllConnections();
    process.exit(0);
  }, SHUTDOWN_GRACE_MS).unref();
}

process.on("SIGTERM", handleSigterm);
process.on("SIGINT", handleSigterm);

server.listen(port, "127.0.0.1", () => {
  console.log(`${APP_NAME} listening on http://127.0.0.1:${port}`);
});
