/** The Grafana dashboard shipped in docker/grafana: valid, and every metric it charts exists in /metrics. */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { GeneratorLive } from "../src/Generator/Live.js"
import { parseExposition } from "./support/prometheus.js"
import { startTestServer } from "./support/server.js"
import { startTgi } from "./support/tgi.js"

const dashboard = JSON.parse(readFileSync(new URL("../docker/grafana/dashboards/nexxi.json", import.meta.url), "utf8"))
const datasources = readFileSync(
  new URL("../docker/grafana/provisioning/datasources/prometheus.yml", import.meta.url),
  "utf8"
)

const expressions: ReadonlyArray<string> = dashboard.panels.flatMap((panel: any) =>
  panel.targets.map((target: any) => target.expr)
)

/** The metric families an expression reads (a histogram's `_bucket` series belong to the histogram). */
const familiesIn = (expr: string) =>
  [...expr.matchAll(/\bnexxi_[a-z0-9_]+/g)].map(([name]) => name.replace(/_(bucket|sum|count)$/, ""))

describe("Grafana dashboard", () => {
  it("is a well-formed dashboard on the provisioned Prometheus datasource", () => {
    expect(dashboard.uid).toBe("nexxi-overview")
    const ids = dashboard.panels.map((panel: any) => panel.id)
    expect(new Set(ids).size).toBe(ids.length)
    const uid = /uid:\s*(\S+)/.exec(datasources)![1]
    for (const panel of dashboard.panels) {
      expect(panel.datasource.uid, panel.title).toBe(uid)
      expect(panel.targets.length, panel.title).toBeGreaterThan(0)
      expect(panel.gridPos.w * panel.gridPos.h, panel.title).toBeGreaterThan(0)
    }
    expect(expressions.every((expr) => familiesIn(expr).length > 0)).toBe(true)
  })

  it.scopedLive("charts only metrics that /metrics exposes after real traffic", () =>
    Effect.gen(function* () {
      // One transient failure, retried, so that the error and retry counters exist too.
      const tgi = yield* startTgi({ fault: { kind: "status", status: 503 }, failTimes: 1, reply: "hi there" })
      const server = yield* startTestServer({
        generator: GeneratorLive,
        env: { TGI_URL: tgi.url, GENERATOR_RETRY_BASE_MS: "5" }
      })
      const ok = yield* Effect.promise(() => server.request("/v1/chat", { method: "POST", json: { message: "hello" } }))
      expect(ok.status).toBe(200)
      // A client that leaves early, so that disconnects are counted.
      const controller = new AbortController()
      yield* Effect.promise(() => tgi.setOptions({ tokensPerSecond: 10, replyTokens: 100, reply: undefined }))
      const streaming = yield* Effect.promise(() =>
        server.request("/v1/chat/stream", { method: "POST", json: { message: "go" }, signal: controller.signal })
      )
      yield* Effect.promise(() => streaming.body!.getReader().read())
      controller.abort()
      yield* Effect.promise(() => tgi.waitFor((r) => r.disconnectedAt !== undefined, 2_000))

      const exposed = yield* Effect.repeat(
        Effect.promise(() => fetch(server.url + "/metrics").then((r) => r.text())).pipe(Effect.map(parseExposition)),
        { until: (families) => families.has("nexxi_chat_client_disconnects_total") }
      ).pipe(Effect.timeout("5 seconds"))
      const missing = [...new Set(expressions.flatMap(familiesIn))].filter((name) => !exposed.has(name))
      expect(missing).toEqual([])
    })
  )
})
