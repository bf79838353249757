/**
 * Traces: OpenTelemetry through @effect/opentelemetry, exported by OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
 * set (the exporter honours the standard `OTEL_EXPORTER_OTLP_*` variables), off otherwise. Effect's spans (the
 * HTTP request, Chat, the generation) become OpenTelemetry spans, and a client's `traceparent` is their parent.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer, Option } from "effect"
import { AppConfig } from "./AppConfig.js"

const VERSION = "0.1.0"

/** Spans handed to `spanProcessor`, for a service named `serviceName`. */
export const tracingWith = (serviceName: string, spanProcessor: SpanProcessor) =>
  NodeSdk.layer(() => ({ resource: { serviceName, serviceVersion: VERSION }, spanProcessor }))

export const TracingLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    Option.match(config.otelEndpoint, {
      onNone: () => Layer.empty,
      onSome: () => tracingWith(config.otelServiceName, new BatchSpanProcessor(new OTLPTraceExporter()))
    })
  )
)
