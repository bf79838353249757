import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Fiber, Layer, Metric, Scope, Stream } from "effect"
import { activeStreams, Metrics, recordHttpRequest, statusClass, trackActiveStream } from "../src/Metrics.js"
import { parseExposition, samplesOf, type Sample, valueOf } from "./support/prometheus.js"

// Effect's metric registry is global to the process, so every test records under its own route label.
let routeCounter = 0
const uniqueRoute = (name: string) => `/test/${name}/${++routeCounter}/:id`

const scrapeParsed = Effect.flatMap(Metrics, (metrics) => metrics.scrape).pipe(Effect.map(parseExposition))

const activeStreamsNow = Effect.map(scrapeParsed, (families) => valueOf(families, "nexxi_chat_active_streams"))

// --- Tests -----------------------------------------------------------------------------------------------------

describe("the exposition reader used by these tests", () => {
  const valid = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n'
  it("accepts a valid exposition", () => {
    expect(parseExposition(valid).get("a_total")?.samples).toEqual([{ name: "a_total", labels: { x: "1" }, value: 2 }])
  })
  it.each([
    ["no trailing newline", valid.slice(0, -1)],
    ["a blank line", valid + "\n"],
    ["a sample without HELP/TYPE", valid + "b 1\n"],
    ["a TYPE without HELP", "# TYPE a gauge\na 1\n"],
    ["another comment", valid + "# UNIT a_total 1\n"],
    ["an unquoted label", "# HELP a A.\n# TYPE a gauge\na{x=1} 1\n"],
    ["a missing value", '# HELP a A.\n# TYPE a gauge\na{x="1"}\n'],
    ["a trailing comma", '# HELP a A.\n# TYPE a gauge\na{x="1",} 1\n'],
    ["a repeated series", valid + 'a_total{x="1"} 3\n'],
    ["a histogram sample without suffix", "# HELP h H.\n# TYPE h histogram\nh 1\n"],
    ["a bucket without le", "# HELP h H.\n# TYPE h histogram\nh_bucket 1\n"]
  ])("rejects %s", (_, text) => {
    expect(() => parseExposition(text)).toThrow()
  })
})

describe("Metrics", () => {
  it("uses the Prometheus 0.0.4 text content type", () => {
    expect(Metrics.contentType).toBe("text/plain; version=0.0.4; charset=utf-8")
  })

  it("groups status codes into classes", () => {
    const classes = (statuses: ReadonlyArray<number>) => statuses.map(statusClass).join(" ")
    expect(classes([200, 201, 204, 301, 404, 429, 500, 503])).toBe("2xx 2xx 2xx 3xx 4xx 4xx 5xx 5xx")
    expect(classes([0, 99, 600, 200.5, Number.NaN])).toBe("unknown unknown unknown unknown unknown")
  })

  // First to build the layer in this file, so it sees the gauge before any stream touched it.
  it.effect("exposes the active streams gauge at 0 before any stream has run", () =>
    Effect.gen(function* () {
      const families = yield* Effect.provide(scrapeParsed, Metrics.Default)
      expect(families.get("nexxi_chat_active_streams")?.samples).toEqual([
        { name: "nexxi_chat_active_streams", labels: {}, value: 0 }
      ])
    })
  )

  it.layer(Metrics.Default)("scrape", (it) => {
    it.effect("counts requests per route template, method and status class", () =>
      Effect.gen(function* () {
        const route = uniqueRoute("counter")
        yield* recordHttpRequest({ route, method: "POST", status: 200, durationMs: 12 })
        yield* recordHttpRequest({ route, method: "POST", status: 201, durationMs: 30 })
        yield* recordHttpRequest({ route, method: "post", status: 200, durationMs: 8 })
        yield* recordHttpRequest({ route, method: "POST", status: 429, durationMs: 1 })
        yield* recordHttpRequest({ route, method: "GET", status: 200, durationMs: 2 })

        const families = yield* scrapeParsed
        const family = families.get("nexxi_http_requests_total")
        expect(family?.type).toBe("counter")
        expect(valueOf(families, "nexxi_http_requests_total", { route, method: "POST", status_class: "2xx" })).toBe(3)
        expect(valueOf(families, "nexxi_http_requests_total", { route, method: "POST", status_class: "4xx" })).toBe(1)
        expect(valueOf(families, "nexxi_http_requests_total", { route, method: "GET", status_class: "2xx" })).toBe(1)
        // Exactly the documented labels: no otel_scope_*, unit or time_unit label leaking through.
        for (const sample of samplesOf(families, "nexxi_http_requests_total", { route })) {
          expect(Object.keys(sample.labels).sort()).toEqual(["method", "route", "status_class"])
        }
      })
    )

    it.effect("records durations in seconds in cumulative, le-inclusive buckets", () =>
      Effect.gen(function* () {
        const route = uniqueRoute("histogram")
        for (const durationMs of [1, 250, 250, 2000, 75_000]) {
          yield* recordHttpRequest({ route, method: "POST", status: 200, durationMs })
        }

        const families = yield* scrapeParsed
        expect(families.get("nexxi_http_request_duration_seconds")?.type).toBe("histogram")
        const labels = { route, method: "POST", status_class: "2xx" }
        expect(valueOf(families, "nexxi_http_request_duration_seconds_count", labels)).toBe(5)
        expect(valueOf(families, "nexxi_http_request_duration_seconds_sum", labels)).toBeCloseTo(77.501, 9)

        const buckets = samplesOf(families, "nexxi_http_request_duration_seconds_bucket", labels)
        expect(Object.fromEntries(buckets.map((bucket) => [bucket.labels.le, bucket.value]))).toEqual({
          "0.001": 1, // 1 ms sits exactly on the first boundary: buckets are "less than or equal"
          "0.0025": 1,
          "0.005": 1,
          "0.01": 1,
          "0.025": 1,
          "0.05": 1,
          "0.1": 1,
          "0.25": 3,
          "0.5": 3,
          "1": 3,
          "2.5": 4,
          "5": 4,
          "10": 4,
          "30": 4,
          "60": 4,
          "+Inf": 5 // 75 s is past the last boundary
        })
        for (const bucket of buckets) {
          expect(Object.keys(bucket.labels).sort()).toEqual(["le", "method", "route", "status_class"])
        }
      })
    )

    it.effect("folds unknown methods into one label value and guards against bad durations", () =>
      Effect.gen(function* () {
        const route = uniqueRoute("normalise")
        yield* recordHttpRequest({ route, method: "BREW", status: 418, durationMs: Number.NaN })
        yield* recordHttpRequest({ route, method: "PROPFIND", status: 418, durationMs: -5 })

        const families = yield* scrapeParsed
        const labels = { route, method: "_OTHER", status_class: "4xx" }
        expect(valueOf(families, "nexxi_http_requests_total", labels)).toBe(2)
        expect(valueOf(families, "nexxi_http_request_duration_seconds_sum", labels)).toBe(0)
        expect(valueOf(families, "nexxi_http_request_duration_seconds_bucket", { ...labels, le: "0.001" })).toBe(2)
      })
    )

    it.effect("moves the active streams gauge up and down", () =>
      Effect.gen(function* () {
        const before = yield* activeStreamsNow
        expect((yield* scrapeParsed).get("nexxi_chat_active_streams")?.type).toBe("gauge")

        yield* Effect.scoped(
          Effect.gen(function* () {
            yield* trackActiveStream
            yield* trackActiveStream
            expect(yield* activeStreamsNow).toBe(before + 2)
          })
        )
        expect(yield* activeStreamsNow).toBe(before)

        // The raw form, for code that cannot hold a scope open.
        yield* Metric.increment(activeStreams)
        expect(yield* activeStreamsNow).toBe(before + 1)
        yield* Metric.incrementBy(activeStreams, -1)
        expect(yield* activeStreamsNow).toBe(before)
      })
    )

    it.effect("counts a response stream while it runs, and not after the client goes away", () =>
      Effect.gen(function* () {
        const before = yield* activeStreamsNow

        // A stream that completes.
        const finite = Stream.unwrapScoped(Effect.as(trackActiveStream, Stream.make("a", "b", "c")))
        const gaugeDuringEachChunk = yield* Stream.runCollect(
          Stream.mapEffect(finite, (chunk) => Effect.map(activeStreamsNow, (active) => [chunk, active - before]))
        )
        expect(Chunk.toReadonlyArray(gaugeDuringEachChunk)).toEqual([
          ["a", 1],
          ["b", 1],
          ["c", 1]
        ])
        expect(yield* activeStreamsNow).toBe(before)

        // A stream interrupted mid-way, as when an SSE client disconnects.
        const firstChunkSent = yield* Deferred.make<void>()
        const endless = Stream.unwrapScoped(Effect.as(trackActiveStream, Stream.concat(Stream.make("a"), Stream.never)))
        const fiber = yield* Effect.fork(
          Stream.runDrain(Stream.tap(endless, () => Deferred.succeed(firstChunkSent, undefined)))
        )
        yield* Deferred.await(firstChunkSent)
        expect(yield* activeStreamsNow).toBe(before + 1)
        yield* Fiber.interrupt(fiber)
        expect(yield* activeStreamsNow).toBe(before)
      })
    )

    it.effect("produces only valid exposition lines, each family with HELP and TYPE", () =>
      Effect.gen(function* () {
        yield* recordHttpRequest({ route: uniqueRoute('quoted "name"\\'), method: "GET", status: 200, durationMs: 3 })
        const text = yield* Effect.flatMap(Metrics, (metrics) => metrics.scrape)
        const families = parseExposition(text) // throws on the first invalid line

        expect([...families.keys()]).toEqual(
          expect.arrayContaining([
            "nexxi_chat_active_streams",
            "nexxi_http_request_duration_seconds",
            "nexxi_http_requests_total",
            "nexxi_process_cpu_seconds_total",
            "nexxi_process_resident_memory_bytes",
            "nexxi_process_heap_used_bytes",
            "nexxi_process_event_loop_lag_seconds"
          ])
        )
        expect([...families.keys()].every((name) => name.startsWith("nexxi_"))).toBe(true)
        expect(samplesOf(families, "nexxi_process_resident_memory_bytes", {})[0]!.value).toBeGreaterThan(1e6)
        for (const family of families.values()) {
          expect(family.help, `${family.name} has a description`).not.toBe("description missing")
          expect(family.samples.length, `${family.name} has samples`).toBeGreaterThan(0)
        }
        // No doubled suffixes, OTel bookkeeping or Effect runtime metrics in the output.
        expect(text).not.toMatch(/_total_total|_seconds_seconds|otel_scope|target_info|effect_fiber|# UNIT/)

        // Label values are escaped and read back unchanged.
        const quoted = samplesOf(families, "nexxi_http_requests_total", {}).filter((s) => s.labels.route?.includes('"'))
        expect(quoted.map((s) => s.labels.route)).toEqual([
          expect.stringMatching(/^\/test\/quoted "name"\\\/\d+\/:id$/)
        ])

        // Every histogram series: cumulative buckets ending in +Inf, which equals _count.
        const histogram = families.get("nexxi_http_request_duration_seconds")!
        const series = new Map<string, Array<Sample>>()
        for (const sample of histogram.samples) {
          const { le: _le, ...rest } = sample.labels
          const key = JSON.stringify(rest)
          series.set(key, [...(series.get(key) ?? []), sample])
        }
        for (const samples of series.values()) {
          const buckets = samples.filter((s) => s.name.endsWith("_bucket"))
          const count = samples.find((s) => s.name.endsWith("_count"))!.value
          expect(buckets.at(-1)?.labels.le).toBe("+Inf")
          expect(buckets.at(-1)?.value).toBe(count)
          buckets.forEach((bucket, i) => i > 0 && expect(bucket.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value))
          expect(samples.some((s) => s.name.endsWith("_sum"))).toBe(true)
        }
      })
    )
  })

  it.effect("can be built several times in one process, each build with its own reader", () =>
    Effect.gen(function* () {
      const route = uniqueRoute("twice")
      yield* recordHttpRequest({ route, method: "GET", status: 200, durationMs: 5 })
      const labels = { route, method: "GET", status_class: "2xx" }

      const first = yield* Scope.make()
      const second = yield* Scope.make()
      const metricsA = Metrics.pipe(Effect.provide(yield* Layer.buildWithScope(Metrics.Default, first)))
      const metricsB = Metrics.pipe(Effect.provide(yield* Layer.buildWithScope(Metrics.Default, second)))
      const a = yield* metricsA
      const b = yield* metricsB

      // Both read the one registry.
      expect(valueOf(parseExposition(yield* a.scrape), "nexxi_http_requests_total", labels)).toBe(1)
      expect(valueOf(parseExposition(yield* b.scrape), "nexxi_http_requests_total", labels)).toBe(1)

      // Closing one build leaves the other working, and a new build after that works too.
      yield* Scope.close(first, Exit.void)
      yield* recordHttpRequest({ route, method: "GET", status: 200, durationMs: 5 })
      expect(valueOf(parseExposition(yield* b.scrape), "nexxi_http_requests_total", labels)).toBe(2)
      yield* Scope.close(second, Exit.void)

      const third = yield* Effect.provide(
        Effect.flatMap(Metrics, (m) => m.scrape),
        Metrics.Default
      )
      expect(valueOf(parseExposition(third), "nexxi_http_requests_total", labels)).toBe(2)

      // A closed build's reader is shut down: scraping it is a defect, not stale data.
      const exit = yield* Effect.exit(a.scrape)
      expect(Exit.isFailure(exit)).toBe(true)
    })
  )
})
