import "./app.css";
import { createRoot } from "react-dom/client";
import { App, type AppConfig } from "./App";

const root = document.getElementById("root");
const configElement = document.getElementById("voicechat-config");
if (root && configElement) {
  const config = JSON.parse(configElement.textContent ?? "{}") as AppConfig;
  createRoot(root).render(<App config={config} workletUrl={root.dataset.worklet ?? "/static/voicechat/pcm-worklet.js"} />);
}
