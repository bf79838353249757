/**
 * The Node HTTP server under the API, with its defences against clients that are slow, stuck or not speaking HTTP:
 *
 * - Request timeouts set explicitly (slowloris): the headers must arrive within `HTTP_HEADERS_TIMEOUT_MS` and the
 *   whole request within `HTTP_REQUEST_TIMEOUT_MS`, checked every second rather than Node's default 30 s.
 * - What Node's parser rejects before the application sees a request (bad framing, oversized headers, a timeout)
 *   is answered like every other error: a 4xx with the common JSON error body, then the connection is closed. (A
 *   missing Host is refused at the edge, `Edge.ts`, for the same reason.)
 */
import { randomUUID } from "node:crypto"
import { createServer, type Server } from "node:http"
import type { Duplex } from "node:stream"

export interface NodeServerSettings {
  readonly httpHeadersTimeoutMs: number
  readonly httpRequestTimeoutMs: number
}

/** Node's error codes for what it refuses to parse, and what the client is told. */
const clientErrors: Record<string, { readonly status: number; readonly type: string; readonly message: string }> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    type: "request_header_fields_too_large",
    message: "The request headers are too large"
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    type: "request_timeout",
    message: "The request was not received in time"
  }
}
const malformed = { status: 400, type: "malformed_request", message: "The request is not valid HTTP/1.1" }

const reasons: Record<number, string> = {
  400: "Bad Request",
  408: "Request Timeout",
  431: "Request Header Fields Too Large"
}

/** The common error body (`Domain/Errors.ts`), for answers written outside the application. */
const errorBody = (type: string, message: string) => {
  const requestId = randomUUID()
  return { requestId, body: JSON.stringify({ error: { type, message, request_id: requestId } }) }
}

/** The raw bytes of an error response that closes the connection: the socket no longer holds a parsable request. */
export const clientErrorResponse = (code: string | undefined) => {
  const { status, type, message } = (code !== undefined ? clientErrors[code] : undefined) ?? malformed
  const { requestId, body } = errorBody(type, message)
  return (
    `HTTP/1.1 ${status} ${reasons[status]}\r\n` +
    "content-type: application/json\r\n" +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    `x-request-id: ${requestId}\r\n` +
    "connection: close\r\n\r\n" +
    body
  )
}

const onClientError = (error: Error & { readonly code?: string }, socket: Duplex) => {
  // A response already under way on this socket cannot be followed by another; a reset peer reads nothing.
  const inProgress = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage
  if (error.code === "ECONNRESET" || !socket.writable || inProgress?.headersSent === true) {
    socket.destroy()
    return
  }
  socket.end(clientErrorResponse(error.code))
}

export const makeNodeServer = (settings: NodeServerSettings): Server => {
  // Node refuses a headers timeout longer than the request timeout: the request's covers its headers too.
  const requestTimeout = settings.httpRequestTimeoutMs
  const headersTimeout = Math.min(settings.httpHeadersTimeoutMs, requestTimeout)
  const server = createServer({
    headersTimeout,
    requestTimeout,
    connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    // Checked at the edge instead, so that the answer has the common error body (Node's has none).
    requireHostHeader: false
  })
  server.on("clientError", onClientError)
  // The server listens before the application's handler is attached: a request arriving in between would
  // otherwise never be answered. Until then it gets a 503 to retry.
  server.on("request", (_request, response) => {
    if (server.listenerCount("request") > 1) return
    const { requestId, body } = errorBody("starting", "The server is starting; retry shortly")
    response.writeHead(503, { "content-type": "application/json", "retry-after": "1", "x-request-id": requestId })
    response.end(body)
  })
  return server
}
