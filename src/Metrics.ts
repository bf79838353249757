/**
 * Metrics: the one place Nexxi's Prometheus exposition comes from.
 *
 * Every metric is an Effect `Metric` (effect/Metric), recorded into Effect's process-wide registry. `Metrics`
 * bridges that registry into an OpenTelemetry `MetricReader` through `@effect/opentelemetry`'s producer and renders
 * it with OpenTelemetry's `PrometheusSerializer`; `GET /metrics` on Nexxi's own server returns `scrape`.
 *
 * Adding a metric (chat latency, token counters, generator errors, process metrics...):
 * - Define it once as a module-level constant next to the code that records it, with a description (it becomes
 *   `# HELP`; without one the exporter prints "description missing").
 * - Name it `nexxi_<what>_<base unit>`: seconds and bytes, never milliseconds.
 * - Counters are `Metric.counter(name, { incremental: true })` and their name ends in `_total`. Without
 *   `incremental` the bridge exports an up/down sum, which Prometheus sees as a gauge. A counter name without
 *   `_total` would get one appended by the serializer; we spell it out so the name in code is the name in the scrape.
 * - Labels are `Metric.tagged` tags with a bounded set of values (route templates, status classes, model ids), never
 *   ids or free text: each distinct value set is a series kept in memory for the life of the process.
 * - Use histograms, not `Metric.summary` (the bridge exports a summary as three families, one named `<name>_count_total`)
 *   and not `Metric.timer*` (it adds a `time_unit` label and counts milliseconds).
 * - Never tag with `unit` or `time_unit`: the bridge reads those tags as the OTel unit but also keeps them as labels.
 */
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { emptyResource } from "@opentelemetry/resources"
import type { MetricProducer } from "@opentelemetry/sdk-metrics"
import { Effect, Metric, MetricBoundaries, MetricLabel } from "effect"
import type { Scope } from "effect"
import { processMetrics } from "./Metrics/Process.js"
import { onScopeClose } from "./lib/finalizer.js"

// --- HTTP ------------------------------------------------------------------------------------------------------

const httpRequestsTotal = Metric.counter("nexxi_http_requests_total", {
  description: "HTTP requests answered, by route template, method and status class.",
  incremental: true
})

/**
 * Non-streaming answers take from about 1 ms (health, validation errors) to 60 s (a long generation); anything
 * slower lands in `+Inf`. Roughly 1-2.5-5 per decade keeps the series count small while quantiles stay usable.
 */
const httpDurationBoundaries = MetricBoundaries.fromIterable([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
])

const httpRequestDurationSeconds = Metric.histogram(
  "nexxi_http_request_duration_seconds",
  httpDurationBoundaries,
  "Time from receiving an HTTP request to finishing its response, by route template, method and status class."
)

/** The methods a browser or SDK sends; anything else is folded into one value so clients cannot mint series. */
const knownMethods: ReadonlySet<string> = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])

/** OpenTelemetry's HTTP semantic conventions use `_OTHER` for methods outside the known set. */
const methodLabel = (method: string): string => {
  const upper = method.toUpperCase()
  return knownMethods.has(upper) ? upper : "_OTHER"
}

/** "2xx", "4xx"...: five values instead of every status code, which is what alerts and dashboards group by. */
export const statusClass = (status: number): string =>
  Number.isInteger(status) && status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : "unknown"

export interface HttpRequestObservation {
  /** The route template (`/v1/chat/session/:session_id`), or `unmatched` when no route matched: never the raw path. */
  readonly route: string
  readonly method: string
  readonly status: number
  readonly durationMs: number
}

/**
 * Records one answered request in `nexxi_http_requests_total` and `nexxi_http_request_duration_seconds`. Called once
 * per request by the HTTP edge middleware. For a streamed (SSE) answer the duration covers the whole stream, which can
 * exceed the last bucket; that is expected, the chat metrics measure time to first token.
 */
export const recordHttpRequest = (request: HttpRequestObservation): Effect.Effect<void> =>
  Effect.suspend(() => {
    const labels = [
      MetricLabel.make("route", request.route),
      MetricLabel.make("method", methodLabel(request.method)),
      MetricLabel.make("status_class", statusClass(request.status))
    ]
    // A NaN would poison the histogram's sum for the rest of the process; a negative duration is a clock artefact.
    const seconds = Number.isFinite(request.durationMs) && request.durationMs > 0 ? request.durationMs / 1000 : 0
    return Effect.zipRight(
      Metric.increment(Metric.taggedWithLabels(httpRequestsTotal, labels)),
      Metric.update(Metric.taggedWithLabels(httpRequestDurationSeconds, labels), seconds)
    )
  })

// --- Chat streams ----------------------------------------------------------------------------------------------

/**
 * Chat streams currently sending to a client. Prefer `trackActiveStream`, which cannot leave the gauge off by one;
 * the raw form is `Metric.increment(activeStreams)` and `Metric.incrementBy(activeStreams, -1)`.
 */
export const activeStreams = Metric.gauge("nexxi_chat_active_streams", {
  description: "Chat completion streams currently open to a client."
})

/**
 * Counts one active stream for the lifetime of the enclosing scope: the release runs on completion, failure and
 * interruption (client disconnect) alike. Wrap a response stream so the scope is the stream's own:
 *
 * ```ts
 * const tracked = Stream.unwrapScoped(Effect.as(trackActiveStream, chunks))
 * ```
 */
export const trackActiveStream: Effect.Effect<void, never, Scope.Scope> = Effect.uninterruptible(
  Effect.zipRight(
    Metric.increment(activeStreams),
    onScopeClose(() => Metric.incrementBy(activeStreams, -1))
  )
)

// --- Exposition ------------------------------------------------------------------------------------------------

/**
 * Effect's registry is process-wide and also holds metrics we do not own: with the default runtime flags Effect
 * records `effect_fiber_*` for every fiber (no descriptions, and a millisecond histogram carrying a `time_unit`
 * label), and libraries may add their own. Only these namespaces reach `/metrics`, so the exposition stays a
 * deliberate, convention-following interface; add a prefix here to export another family on purpose.
 */
const exportedNamespaces: ReadonlyArray<string> = ["nexxi_"]

const isExported = (name: string): boolean => exportedNamespaces.some((prefix) => name.startsWith(prefix))

/**
 * Adapts the bridge's output for Prometheus: keeps the exported namespaces, and clears the OTel unit. The bridge gives
 * every metric the unit "1" (or the value of a `unit` tag), which the serializer prints as a `# UNIT` comment:
 * meaningless in the 0.0.4 text format and wrong for `_seconds` histograms. The unit is already in the name; without
 * an OTel unit, an exporter release that follows the spec's unit-suffix rules (`_seconds`, `_ratio` for "1" gauges)
 * has nothing to append either, so the names stay exactly as written.
 */
const forPrometheus = (producer: MetricProducer): MetricProducer => ({
  collect: (options) =>
    producer.collect(options).then((result) => ({
      ...result,
      resourceMetrics: {
        ...result.resourceMetrics,
        scopeMetrics: result.resourceMetrics.scopeMetrics.map((scopeMetrics) => ({
          ...scopeMetrics,
          metrics: scopeMetrics.metrics
            .filter((metric) => isExported(metric.descriptor.name))
            .map((metric) => ({ ...metric, descriptor: { ...metric.descriptor, unit: "" } }))
        }))
      }
    }))
})

// Scope labels (`otel_scope_name` on every series) and `target_info` (resource attributes) are OTel bookkeeping:
// Prometheus identifies the process by its own `job`/`instance` target labels.
const serializerOptions = { withoutScopeInfo: true, withoutTargetInfo: true } as const

export class Metrics extends Effect.Service<Metrics>()("nexxi/Metrics", {
  scoped: Effect.gen(function* () {
    // A pull reader with no server of its own: Nexxi serves the text on its HTTP server. Each build has its own
    // reader and nothing is registered globally (no global MeterProvider), so layers can be built many times.
    const reader = new PrometheusExporter({ preventServerStart: true, ...serializerOptions })
    // The exporter's serializer is private and writes to a Node response; this one returns the string.
    const serializer = new PrometheusSerializer(
      undefined,
      false,
      undefined,
      serializerOptions.withoutTargetInfo,
      serializerOptions.withoutScopeInfo
    )

    // The resource would only feed `target_info`, which is off.
    const producer = yield* Effect.provideService(OtelMetrics.makeProducer, OtelResource.Resource, emptyResource())
    // Shuts the reader down when the scope closes.
    yield* OtelMetrics.registerProducer(forPrometheus(producer), () => reader)

    // Effect registers a metric on its first update; touching the gauge makes it visible (as 0) from the first
    // scrape. Adding 0 rather than setting 0 keeps the count right when another layer in the process has streams open.
    yield* Metric.incrementBy(activeStreams, 0)

    const sampleProcess = yield* processMetrics
    const scrape: Effect.Effect<string> = Effect.zipRight(
      sampleProcess,
      Effect.promise(() => reader.collect())
    ).pipe(
      Effect.tap(({ errors }) =>
        errors.length > 0 ? Effect.logWarning("metrics collection reported errors", ...errors) : Effect.void
      ),
      Effect.map(({ resourceMetrics }) => serializer.serialize(resourceMetrics))
    )

    return { scrape } as const
  })
}) {
  /** The Prometheus text exposition format, version 0.0.4 (what `scrape` produces). */
  static readonly contentType = "text/plain; version=0.0.4; charset=utf-8"
}
