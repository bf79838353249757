/**
 * The upstream of the benchmark: the project's TGI-compatible development server (`dev/tgi/server.ts`) in a process
 * of its own, so that its CPU time is not charged to anyone else. The parent sets its pace over the IPC channel.
 *
 * The server keeps a record of every request (for tests); here that record is emptied every second, or a long run
 * would grow the upstream's memory and slow it down.
 */
import { type RecordedRequest, startTgiServer, type TgiRuntimeOptions } from "../dev/tgi/server.js"

export type UpstreamCommand = { readonly id: number; readonly set: TgiRuntimeOptions }

const send = (message: unknown) => process.send?.(message)

const main = async () => {
  const server = await startTgiServer({
    port: 0,
    host: "127.0.0.1",
    // The benchmark opens up to a few thousand streams at once: never refuse one as "overloaded".
    maxConcurrentRequests: 100_000,
    maxInputTokens: 32_000,
    maxTotalTokens: 32_768,
    tokensPerSecond: 0,
    firstTokenDelayMs: 0
  })
  const requests = server.requests as Array<RecordedRequest>
  setInterval(() => requests.splice(0, requests.length), 1_000).unref()
  process.on("message", (command: UpstreamCommand) => {
    void server.setOptions(command.set).then(() => send({ id: command.id }))
  })
  process.on("disconnect", () => void server.close())
  send({ ready: server.url })
}

main().catch((error: unknown) => {
  console.error(`bench upstream: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
})
