/**
 * The floor: the least a gateway in front of TGI can do, written with Node's `http` module alone. It serves Nexxi's
 * two chat paths with Nexxi's request body and makes the upstream request Nexxi makes, and nothing else: no auth,
 * limits, safety, session, storage, logging or metrics.
 *
 * - `POST /v1/chat/stream`: `{message}` → TGI's Messages API (system prompt + message, `max_tokens`, `stream: true`,
 *   usage included) on a keep-alive agent; the upstream's SSE bytes are piped back unchanged.
 * - `POST /v1/chat`: the same upstream request; the deltas are read from the stream, concatenated and answered as
 *   one JSON object, as Nexxi's whole-reply endpoint does.
 *
 * Run by the benchmark as a child process (`BARE_UPSTREAM`, `BARE_SYSTEM_PROMPT`, `BARE_MAX_NEW_TOKENS`); it sends
 * `{ready: url}` over the IPC channel once it listens.
 */
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from "node:http"
import { upstreamRequestBody } from "./lib/upstream-request.js"

const upstream = new URL("/v1/chat/completions", process.env.BARE_UPSTREAM ?? "http://127.0.0.1:8080")
const systemPrompt = process.env.BARE_SYSTEM_PROMPT ?? "You are a helpful assistant."
const maxNewTokens = Number(process.env.BARE_MAX_NEW_TOKENS ?? 512)
const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096 })

const fail = (res: ServerResponse, status: number, message: string) => {
  if (res.headersSent) return void res.destroy()
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ error: message }))
}

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve, reject) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (chunk: string) => (body += chunk))
    req.on("end", () => resolve(body))
    req.on("error", reject)
  })

/** Deltas of an OpenAI-style SSE stream, concatenated. */
const collect = (upstreamResponse: IncomingMessage) =>
  new Promise<{ text: string; tokens: number }>((resolve, reject) => {
    let buffer = ""
    let text = ""
    let tokens = 0
    upstreamResponse.setEncoding("utf8")
    upstreamResponse.on("data", (chunk: string) => {
      buffer += chunk
      let end: number
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        if (!event.startsWith("data: ") || event === "data: [DONE]") continue
        const data = JSON.parse(event.slice(6)) as {
          choices?: Array<{ delta?: { content?: string } }>
          usage?: { total_tokens?: number } | null
        }
        text += data.choices?.[0]?.delta?.content ?? ""
        if (data.usage?.total_tokens !== undefined) tokens = data.usage.total_tokens
      }
    })
    upstreamResponse.on("end", () => resolve({ text, tokens }))
    upstreamResponse.on("error", reject)
  })

const handle = async (req: IncomingMessage, res: ServerResponse) => {
  const streaming = req.url === "/v1/chat/stream"
  if (req.method !== "POST" || (!streaming && req.url !== "/v1/chat")) return fail(res, 404, "not found")
  const { message } = JSON.parse(await readBody(req)) as { message: string }
  const body = upstreamRequestBody(systemPrompt, message, maxNewTokens)
  const upstreamRequest = request(upstream, {
    method: "POST",
    agent,
    headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
  })
  // A client that goes away stops the generation upstream, as Nexxi does.
  res.on("close", () => {
    if (!res.writableFinished) upstreamRequest.destroy()
  })
  upstreamRequest.on("error", () => fail(res, 502, "upstream failed"))
  upstreamRequest.on("response", (upstreamResponse) => {
    if (streaming) {
      res.writeHead(upstreamResponse.statusCode ?? 502, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache"
      })
      upstreamResponse.pipe(res)
      return
    }
    collect(upstreamResponse).then(
      ({ text, tokens }) => {
        const reply = JSON.stringify({ message: text, tokens_used: tokens })
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(reply) })
        res.end(reply)
      },
      () => fail(res, 502, "upstream failed")
    )
  })
  upstreamRequest.end(body)
}

const server = createServer((req, res) => void handle(req, res).catch(() => fail(res, 400, "bad request")))
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as { port: number }
  process.send?.({ ready: `http://127.0.0.1:${port}` })
})
process.on("disconnect", () => process.exit(0))
