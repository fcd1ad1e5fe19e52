// Builds the committed bundle into ../static/voicechat with fixed names, so the build is deterministic
// and Django serves it with no Node at run time. The worklet is its own entry: it runs in the audio thread.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  base: "/static/voicechat/",
  build: {
    outDir: process.env.VOICECHAT_OUT_DIR ?? "../static/voicechat",
    emptyOutDir: false,
    sourcemap: false,
    target: "es2022",
    modulePreload: false,
    rollupOptions: {
      input: { app: "src/main.tsx", "pcm-worklet": "src/worklet.ts" },
      output: {
        entryFileNames: "[name].js",
        chunkFileNames: "[name].js",
        assetFileNames: "[name][extname]",
      },
    },
  },
  test: { environment: "node", globals: true, include: ["src/**/*.test.ts", "src/**/*.test.tsx"] },
});
