/** The Node server under the API, before the application's handler is attached: starting, not silent. */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { AddressInfo } from "node:net"
import { makeNodeServer } from "../src/Http/NodeServer.js"

describe("makeNodeServer", () => {
  it.scopedLive("answers 503 with Retry-After while the application is not attached yet, then leaves it to it", () =>
    Effect.gen(function* () {
      const server = makeNodeServer({ httpHeadersTimeoutMs: 5_000, httpRequestTimeoutMs: 10_000 })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.sync(() => server.close())
      )
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`
      const early = yield* Effect.promise(() => fetch(url))
      expect(early.status).toBe(503)
      expect(early.headers.get("retry-after")).toBe("1")
      const body = (yield* Effect.promise(() => early.json())) as { error: { type: string; request_id: string } }
      expect(body.error.type).toBe("starting")
      expect(body.error.request_id).toBe(early.headers.get("x-request-id"))

      server.on("request", (_request, response) => response.end("served by the application"))
      const later = yield* Effect.promise(() => fetch(url))
      expect(later.status).toBe(200)
      expect(yield* Effect.promise(() => later.text())).toBe("served by the application")
    })
  )
})
