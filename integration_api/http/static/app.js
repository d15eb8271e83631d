// The chat page's script: ONE WebSocket to the gRPC-JSON bridge's StreamChat, opened on the first Send and reused,
// several requests multiplexed on it by requestId (the framing is in docs/bridge.md). No dependencies, no build.
"use strict";

const STREAM_CHAT = "/integration_api.UnifiedProviderService/StreamChat";
const VALUE = "type.googleapis.com/google.protobuf.Value";
const $ = (id) => document.getElementById(id);

const inFlight = new Map(); // requestId -> Reply still waiting for its terminal frame
let history = []; // finished turns, sent as `conversations` before each new message
let socket = null; // the WebSocket while it is connecting or open
let ready = null; // resolves to `socket` once it is open and the $auth message is sent
let sequence = 0;

function setConnection(state, text) {
  const pill = $("connection");
  pill.dataset.state = state;
  pill.textContent = text;
}

function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = !text;
}

// Gateway API keys look like ia_<id>_<secret>; anything else is taken for a service token.
function authMessage(key) {
  return { $auth: key.startsWith("ia_") ? { "x-api-key": key } : { authorization: `Bearer ${key}` } };
}

function connect() {
  if (socket) return ready;
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${STREAM_CHAT}`);
  let status = null; // the RPC's $status, when the server sent one before closing
  socket = ws;
  setConnection("connecting", "connecting…");
  ready = new Promise((resolve, reject) => {
    ws.addEventListener("open", () => {
      const key = $("api-key").value.trim();
      // Browsers cannot set headers on a WebSocket: the key goes in the first message, never in the URL.
      if (key) ws.send(JSON.stringify(authMessage(key)));
      setConnection("open", "connected");
      resolve(ws);
    });
    ws.addEventListener("close", () => reject(new Error("could not connect to the gateway")));
  });
  ws.addEventListener("message", (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      showNotice("The server sent a message that is not JSON.");
      return;
    }
    if (message.$status) status = message.$status;
    else if (message.$error) showNotice(`${message.$error.code}: ${message.$error.message}`);
    else inFlight.get(message.requestId)?.onFrame(message);
  });
  ws.addEventListener("close", (event) => {
    if (socket === ws) socket = ready = null;
    const failed = status && status.code !== "OK";
    if (failed) showNotice(`${status.code}: ${status.message}`);
    if (failed) setConnection("error", status.code.toLowerCase().replaceAll("_", " "));
    else setConnection("closed", "not connected");
    for (const reply of [...inFlight.values()]) {
      if (failed) reply.end("error", status.code, status.message);
      else reply.end("error", "disconnected", `the connection closed (${event.code}) before the reply ended`);
    }
  });
  return ready;
}

function value(v) {
  return { "@type": VALUE, value: v };
}

function buildRequest(requestId, text) {
  const provider = $("provider").value.trim() || "simulated";
  const model = $("model").value.trim();
  const providerKey = $("provider-key").value;
  const delay = Number($("delay").value);
  const params = {};
  if (model) params["model.name"] = value(model);
  if (provider === "simulated" && delay > 0) params["model.simulated_delay_ms"] = value(delay);
  const turn = (t) =>
    t.role === "user"
      ? { role: "user", user: { content: t.text } }
      : { role: "assistant", assistant: { contents: [t.text] } };
  const conversations = [...history, { role: "user", text }].map(turn);
  const request = { requestId, providerName: provider, conversations };
  if (Object.keys(params).length) request.modelParameters = params;
  if (providerKey) request.credential = { value: { key: providerKey } };
  return request;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Follow the newest text, unless the reader has scrolled up to read something older.
function keepScrolled(change) {
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  change();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function addToLog(node) {
  keepScrolled(() => $("log").append(node));
}

// One reply bubble: its streamed text, live time-to-first-token and rate, a Cancel button while it is in flight.
class Reply {
  constructor(requestId, prompt, label) {
    this.id = requestId;
    this.prompt = prompt;
    this.text = "";
    this.words = 0;
    this.sentAt = performance.now();
    this.firstAt = 0;
    this.lastAt = 0;
    this.tools = new Map();
    this.node = element("li", "bubble assistant");
    this.node.dataset.requestId = requestId;
    this.node.dataset.state = "waiting";
    const head = element("div", "meta");
    this.statusNode = element("span", "status", "waiting…");
    this.cancelButton = element("button", "cancel secondary", "Cancel");
    this.cancelButton.type = "button";
    this.cancelButton.setAttribute("aria-label", `Cancel the reply to “${prompt.slice(0, 40)}”`);
    this.cancelButton.addEventListener("click", () => this.cancel());
    head.append(element("span", "who", label), this.statusNode, this.cancelButton);
    this.textNode = element("div", "text");
    this.toolNode = element("pre", "tools");
    this.toolNode.hidden = true;
    this.errorNode = element("p", "error");
    this.errorNode.hidden = true;
    this.statsNode = element("div", "stats", "");
    this.node.append(head, this.textNode, this.toolNode, this.errorNode, this.statsNode);
    addToLog(this.node);
    inFlight.set(requestId, this);
  }

  onFrame(frame) {
    const message = frame.data?.assistant ?? {};
    if (frame.final) {
      // The final frame repeats the whole message: use it only when nothing was streamed.
      if (!this.text && message.contents) this.append(message.contents.join(""));
      if (frame.success === false || frame.error) {
        const cancelled = frame.error?.status === "CANCELLED";
        if (cancelled) this.end("cancelled", "cancelled");
        else this.end("error", frame.error?.status || "error", frame.error?.humanMessage || frame.error?.errorMessage);
      } else {
        const finish = frame.finishReason && frame.finishReason !== "stop" ? `done (${frame.finishReason})` : "done";
        this.end("done", finish, "", frame.usage);
      }
      return;
    }
    // e.g. a duplicate id refused: not this request's terminal frame
    if (frame.error) showNotice(`${frame.error.status}: ${frame.error.humanMessage || frame.error.errorMessage}`);
    for (const text of message.contents ?? []) this.append(text);
    for (const call of message.toolCalls ?? []) this.addToolCall(call);
  }

  append(text) {
    if (!text) return;
    const now = performance.now();
    if (!this.firstAt) this.firstAt = now;
    this.lastAt = now;
    this.text += text;
    this.words = this.text.split(/\s+/).filter(Boolean).length;
    this.node.dataset.state = "streaming";
    this.statusNode.textContent = "streaming…";
    keepScrolled(() => (this.textNode.textContent = this.text));
    this.showStats();
  }

  addToolCall(call) {
    const parts = this.tools.get(call.index ?? 0) ?? { name: "", args: "" };
    parts.name ||= call.function?.name ?? "";
    parts.args += call.function?.arguments ?? "";
    this.tools.set(call.index ?? 0, parts);
    this.toolNode.hidden = false;
    this.toolNode.textContent = [...this.tools.values()].map((p) => `tool call: ${p.name}(${p.args})`).join("\n");
    if (!this.firstAt) this.firstAt = performance.now();
  }

  // Time to first token, and the rate of the words streamed after the first one (words, not vendor tokens).
  showStats(usage) {
    if (!this.firstAt) return; // nothing streamed: no figures to show
    const parts = [`first token ${Math.round(this.firstAt - this.sentAt)} ms`];
    parts.push(`${this.words} word${this.words === 1 ? "" : "s"}`);
    const seconds = (this.lastAt - this.firstAt) / 1000;
    if (this.words > 1 && seconds > 0) {
      const rate = (this.words - 1) / seconds;
      parts.push(`${rate.toFixed(rate < 100 ? 1 : 0)} words/s`);
    }
    if (usage?.outputTokens) parts.push(`${usage.outputTokens} tokens out`);
    this.statsNode.textContent = parts.join(" · ");
  }

  cancel() {
    this.cancelButton.disabled = true;
    this.statusNode.textContent = "cancelling…";
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ requestId: this.id, action: "REQUEST_ACTION_CANCEL" }));
    } else {
      this.end("cancelled", "cancelled");
    }
  }

  end(state, text, detail, usage) {
    if (!inFlight.delete(this.id)) return;
    this.node.dataset.state = state;
    this.statusNode.textContent = text;
    this.cancelButton.remove();
    this.showStats(usage);
    if (detail) {
      this.errorNode.textContent = detail;
      this.errorNode.hidden = false;
    }
    if (state === "done") history.push({ role: "user", text: this.prompt }, { role: "assistant", text: this.text });
  }
}

async function send(event) {
  event.preventDefault();
  const box = $("message");
  const text = box.value.trim();
  if (!text) return;
  box.value = "";
  showNotice("");
  const requestId = `web-${Date.now().toString(36)}-${++sequence}`;
  const request = buildRequest(requestId, text);
  const user = element("li", "bubble user");
  user.append(element("div", "text", text));
  addToLog(user);
  const model = $("model").value.trim();
  const reply = new Reply(requestId, text, model ? `${request.providerName}/${model}` : request.providerName);
  try {
    const ws = await connect();
    if (inFlight.has(requestId)) ws.send(JSON.stringify(request)); // not when cancelled while connecting
  } catch (error) {
    reply.end("error", "not connected", error.message);
  }
}

function newConversation() {
  for (const reply of [...inFlight.values()]) reply.cancel();
  inFlight.clear(); // what they still send belongs to the old conversation
  history = [];
  $("log").replaceChildren();
  showNotice("");
}

$("composer").addEventListener("submit", send);
$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
// A different key needs a new stream: the bridge authenticates a socket once, when it opens.
$("api-key").addEventListener("change", () => socket?.close(1000, "the API key changed"));
$("new-chat").addEventListener("click", newConversation);
$("settings").addEventListener("submit", (event) => event.preventDefault());
