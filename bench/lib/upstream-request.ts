/**
 * The request Nexxi sends the model server for one message (TGI's Messages API, streamed, with usage): what the
 * bare proxy sends too, and what "direct" sends straight to the model server.
 */
export const upstreamRequestBody = (systemPrompt: string, message: string, maxNewTokens: number): string =>
  JSON.stringify({
    model: "tgi",
    messages: [
      { role: "system", content: systemPrompt },
      { role: "user", content: message }
    ],
    max_tokens: maxNewTokens,
    stream: true,
    stream_options: { include_usage: true }
  })
