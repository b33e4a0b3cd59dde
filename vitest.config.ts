import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // e2e tests boot systemd-nspawn containers; running them in parallel on 2 cores only slows everything.
    fileParallelism: true,
    pool: "forks",
  },
});
