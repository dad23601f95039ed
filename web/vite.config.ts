import { defineConfig } from "vite";

// The studio is served by `doppel serve --web web/dist`; during `npm run dev` the API is
// proxied to a doppel serve on the default port.
export default defineConfig({
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", assetsInlineLimit: 0 },
  server: { proxy: { "/api": "http://127.0.0.1:7860" } },
});
