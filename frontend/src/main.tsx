import "./app.css";
import { createRoot } from "react-dom/client";
import { App, type AppConfig } from "./App";
import { voicechat } from "./counters";
import { DEFAULT_PREBUFFER_MS } from "./player";

window.__voicechat = voicechat;

const root = document.getElementById("root");
const configElement = document.getElementById("voicechat-config");
if (root && configElement) {
  const config = JSON.parse(configElement.textContent ?? "{}") as AppConfig;
  const prebuffer = Number(root.dataset.prebufferMs);
  const prebufferMs = Number.isFinite(prebuffer) && prebuffer >= 0 ? prebuffer : DEFAULT_PREBUFFER_MS;
  createRoot(root).render(<App config={config} workletUrl={root.dataset.worklet ?? "/static/voicechat/pcm-worklet.js"} prebufferMs={prebufferMs} />);
}
