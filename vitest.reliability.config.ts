import { defineConfig } from "vitest/config"

// The reliability suite (`npm run test:reliability`): real processes on loopback, faults injected into the model
// server, Redis and PostgreSQL, hostile clients. Kept apart from `npm test` because it is slower.
export default defineConfig({
  test: {
    include: ["test/reliability/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // One file at a time: several tests stop shared services or measure timing.
    fileParallelism: false
  }
})
