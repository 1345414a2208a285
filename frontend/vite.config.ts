import { defineConfig } from "vite";

// Run as `vite build frontend` from the repository root: the root is this
// folder, so the output lands in frontend/dist. frontend/public/.gitkeep is
// copied into dist on every build, keeping the placeholder that lets
// `go build` embed the folder before the front end was ever built.
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
  },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:8080", ws: true },
    },
  },
});
