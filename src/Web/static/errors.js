// What a person reads when something goes wrong: the API's error types in plain words, with the wait time when
// there is one. The API's own message is kept for the cases it explains best.

const duration = (seconds) => {
  if (seconds === undefined || !Number.isFinite(seconds)) return "a moment"
  const whole = Math.max(1, Math.ceil(seconds))
  if (whole < 90) return whole === 1 ? "1 second" : `${whole} seconds`
  const minutes = Math.round(whole / 60)
  return `${minutes} minutes`
}

const rateLimitReason = {
  requests: "You have sent too many requests this minute",
  tokens: "You have used up this minute's allowance of tokens",
  concurrency: "Too many replies are being written for your key at the same time",
  auth_failures: "There were too many attempts with a wrong API key from your address"
}

const categoryNames = (categories) =>
  (categories ?? []).map((category) => category.replace(/[_-]+/g, " ").toLowerCase()).join(", ")

/** The sentence to show for an `ApiError` (or anything else that was thrown). */
export const describeError = (error) => {
  const detail = error?.detail
  if (detail === undefined) return "Something went wrong in the page. Reload it and try again."
  const wait = duration(detail.retry_after_seconds)
  switch (detail.type) {
    case "network_error":
      return "Nexxi could not be reached. Check your connection and try again."
    case "unauthorized":
      return "Your API key was not accepted. Check it and enter it again."
    case "rate_limited":
      return `${rateLimitReason[detail.limit] ?? "You have reached a rate limit"}. Try again in ${wait}.`
    case "content_blocked": {
      const categories = categoryNames(detail.categories)
      return `Your message was blocked by the safety filter${categories ? ` (${categories})` : ""}. Rephrase it and try again.`
    }
    case "generator_unavailable":
      return `The model is unavailable at the moment. Try again in ${wait}.`
    case "generator_timeout":
      return "The model took too long to answer. Try again."
    case "generator_failed":
      return "The model failed while writing the reply. Try again."
    case "input_too_long":
      return "This conversation is too long for the model. Start a new chat."
    case "session_busy":
      return "Another reply in this conversation is still being written. Try again when it has finished."
    case "session_not_found":
      return "This conversation can no longer be continued (it has expired or was deleted). Start a new chat."
    case "conversation_not_found":
      return "This conversation no longer exists."
    case "session_unavailable":
    case "storage_unavailable":
    case "keys_unavailable":
    case "rate_limit_unavailable":
    case "service_unavailable":
      return `Nexxi is having trouble with one of its services. Try again in ${wait}.`
    case "validation_error":
    case "payload_too_large":
      return `Nexxi could not accept this message: ${detail.message}`
    case "internal_error":
      return `Something went wrong on the server. If it keeps happening, report request ${detail.request_id}.`
    default:
      return detail.message || "Something went wrong. Try again."
  }
}
