/**
 * Logs: one JSON object per line on stdout — time, level, message, trace_id and span_id, then the annotations of
 * the fiber (request_id, method, route, status, duration_ms, ...). Secrets never reach a log line: they are `Redacted`
 * values, which print as `<redacted>`.
 */
import {
  Cause,
  Context,
  Effect,
  FiberRef,
  FiberRefs,
  HashMap,
  Inspectable,
  Layer,
  List,
  Logger,
  Option,
  Tracer
} from "effect"
import { AppConfig } from "./AppConfig.js"
import { redactPii } from "./Safety/Redact.js"

/**
 * Personal data and secrets never reach a log line either: the message, string annotations and error text go through
 * the PII detectors. Short strings cannot hold any, and each detector first checks for the one character it needs
 * (a digit, an "@", a token prefix), so ordinary lines cost a few microseconds.
 */
const redactForLog = (text: string): string => (text.length < 6 ? text : redactPii(text).text)

const messageText = (message: unknown): string => {
  const parts = Array.isArray(message) ? message : [message]
  return parts.map((part) => (typeof part === "string" ? part : Inspectable.format(part))).join(" ")
}

export const jsonLogger = (write: (line: string) => void) =>
  Logger.make(({ annotations, cause, context, date, logLevel, message, spans }) => {
    const entry: Record<string, unknown> = {
      time: date.toISOString(),
      level: logLevel.label.toLowerCase(),
      message: redactForLog(messageText(message))
    }
    // The current span's ids join a log line to its trace.
    const span = Context.getOption(FiberRefs.getOrDefault(context, FiberRef.currentContext), Tracer.ParentSpan)
    if (Option.isSome(span)) {
      entry.trace_id = span.value.traceId
      entry.span_id = span.value.spanId
    }
    for (const [key, value] of HashMap.toEntries(annotations)) {
      entry[key] = typeof value === "string" ? redactForLog(value) : value
    }
    if (!Cause.isEmpty(cause)) entry.error = redactForLog(Cause.pretty(cause, { renderErrorCause: true }))
    const now = date.getTime()
    for (const span of List.toArray(spans)) entry[`${span.label}_ms`] = now - span.startTime
    write(Inspectable.stringifyCircular(entry))
  })

/** Replaces Effect's default logger with JSON lines at the configured level. */
export const LoggingLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    Layer.merge(
      Logger.replace(
        Logger.defaultLogger,
        jsonLogger((line) => process.stdout.write(line + "\n"))
      ),
      Logger.minimumLogLevel(config.logLevel)
    )
  )
)
