// The demo page: connects through socket-server's browser client (/client.js),
// which gets a dev token, registers, refreshes the token and reconnects by
// itself; the page only shows its state and every push it receives.
import { createClient } from "/client.js";

const $ = (id) => document.getElementById(id);
let client;

async function devToken(userId) {
  const res = await fetch("/demo/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ userId }),
  });
  if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
  return (await res.json()).token;
}

// The API port is not derivable from the page's port (API_PORT may be 0); asked
// once at load, so the curl line is there as soon as the page shows "registered".
const apiBase = fetch("/demo/info")
  .then((r) => (r.ok ? r.json() : {}))
  .catch(() => ({}))
  .then((info) =>
    info.apiPort
      ? `${location.protocol}//${location.hostname}:${info.apiPort}`
      : "http://<host>:<API_PORT>",
  );

function showCurl(userId, api) {
  $("curl").textContent =
    `curl -H "Authorization: Bearer $API_KEY" -H 'content-type: application/json' \\\n` +
    `  -d '{"userId":"${userId}","event":"hello","payload":{"text":"hi"}}' \\\n` +
    `  ${api}/api/push`;
}

const LABELS = {
  offline: "not connected",
  connecting: "connecting…",
  reconnecting: "reconnecting…",
  registered: "registered",
  failed: "failed",
};

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const userId = $("user").value.trim();
  const api = await apiBase;
  client?.close();
  client = createClient({ userId, getToken: () => devToken(userId) });
  client.onState(({ state, reason }) => {
    if (state === "registered") showCurl(userId, api);
    $("status").textContent =
      state === "registered" ? `registered as ${userId}` : `${LABELS[state]} (${reason})`;
    $("status").dataset.state = state;
  });
  client.onAny((event, payload) => {
    const li = document.createElement("li");
    li.textContent = `${new Date().toLocaleTimeString()}  ${event}  ${JSON.stringify(payload)}`;
    li.dataset.event = event;
    $("pushes").prepend(li);
  });
});
