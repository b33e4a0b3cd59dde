import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // A temporary directory per run, which the run must leave empty (test/global-tmp.ts), and one per test
    // file inside it, removed after the file (test/setup-tmp.ts).
    globalSetup: ["test/global-tmp.ts"],
    setupFiles: ["test/setup-tmp.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // e2e tests boot systemd-nspawn containers; running them in parallel on 2 cores only slows everything.
    fileParallelism: true,
    pool: "forks",
  },
});
