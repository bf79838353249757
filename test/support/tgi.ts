/** The project's TGI-compatible server, in-process on a free port, for the scope of a test. */
import { Effect, Option } from "effect"
import { startTgiServer, type TgiServerOptions } from "../../dev/tgi/server.js"
import type { ResilienceSettings } from "../../src/Generator/Resilience.js"
import { makeTgiGenerator } from "../../src/Generator/Tgi.js"

export const startTgi = (options: TgiServerOptions = {}) =>
  Effect.acquireRelease(
    Effect.promise(() => startTgiServer(options)),
    (server) => Effect.promise(() => server.close())
  )

/** Quick retries and generous timeouts: tests that need others say so. */
export const testResilience: ResilienceSettings = {
  maxRetries: 2,
  retryBaseMs: 10,
  retryBudgetMs: 2_000,
  firstTokenTimeoutMs: 5_000,
  idleTimeoutMs: 5_000,
  deadlineMs: Option.none(),
  breakerThreshold: 100,
  breakerCooldownMs: 1_000
}

export const tgiGenerator = (url: string, resilience: Partial<ResilienceSettings> = {}) =>
  makeTgiGenerator({ url, apiKey: Option.none(), resilience: { ...testResilience, ...resilience } })
