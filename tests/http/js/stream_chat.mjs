// One streamed chat through the gateway's OpenAI-compatible API with the official `openai` npm package.
// Usage: node stream_chat.mjs BASE_URL API_KEY MESSAGE; prints one JSON line: {text, chunks, roles, finish, usage}.
import OpenAI from "openai";

const [baseURL, apiKey, message] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const stream = await client.chat.completions.create({
  model: "simulated/echo",
  messages: [{ role: "user", content: message }],
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
let chunks = 0;
let finish = null;
let usage = null;
const roles = [];
for await (const chunk of stream) {
  chunks += 1;
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    if (choice.delta.role) roles.push(choice.delta.role);
    if (choice.delta.content) text += choice.delta.content;
    if (choice.finish_reason) finish = choice.finish_reason;
  }
}
console.log(JSON.stringify({ text, chunks, roles, finish, usage }));
