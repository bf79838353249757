/**
 * Logs: one JSON object per line on stdout — time, level, message, then the annotations of the fiber
 * (request_id, method, route, status, duration_ms, ...). Secrets never reach a log line: they are `Redacted`
 * values, which print as `<redacted>`.
 */
import { Cause, Effect, HashMap, Inspectable, Layer, List, Logger } from "effect"
import { AppConfig } from "./AppConfig.js"

const messageText = (message: unknown): string => {
  const parts = Array.isArray(message) ? message : [message]
  return parts.map((part) => (typeof part === "string" ? part : Inspectable.format(part))).join(" ")
}

export const jsonLogger = (write: (line: string) => void) =>
  Logger.make(({ annotations, cause, date, logLevel, message, spans }) => {
    const entry: Record<string, unknown> = {
      time: date.toISOString(),
      level: logLevel.label.toLowerCase(),
      message: messageText(message)
    }
    for (const [key, value] of HashMap.toEntries(annotations)) entry[key] = value
    if (!Cause.isEmpty(cause)) entry.error = Cause.pretty(cause, { renderErrorCause: true })
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
