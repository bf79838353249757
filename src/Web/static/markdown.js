// Replies are Markdown. What the model writes is untrusted: raw HTML in it is shown as text, never interpreted, and
// the HTML marked produces is sanitised by DOMPurify before it reaches the page, so no script, event handler,
// style or remote image from a reply can run or load.
import { Marked } from "./vendor/marked.esm.js"
import DOMPurify from "./vendor/purify.es.mjs"

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (char) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[char])

const marked = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: {
    // HTML written by the model is shown as the text it is.
    html: ({ text, block }) => (block ? `<p class="raw-html">${escapeHtml(text)}</p>` : escapeHtml(text)),
    // Images would be requests to wherever a reply points: show the description and the address instead.
    image: ({ href, text }) => escapeHtml(text ? `${text} (${href})` : href)
  }
})

const purifyConfig = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "img", "form", "input", "button", "textarea", "select", "video", "audio", "iframe"],
  // No ids or names from a reply: they could clobber the page's own elements.
  FORBID_ATTR: ["style", "id", "name"],
  ALLOW_DATA_ATTR: false
}

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank")
    node.setAttribute("rel", "noopener noreferrer nofollow")
  }
})

const copyText = async (button, text) => {
  try {
    await navigator.clipboard.writeText(text)
    button.textContent = "Copied"
  } catch {
    button.textContent = "Copy failed"
  }
  setTimeout(() => (button.textContent = "Copy"), 1500)
}

/** Wraps each code block with its language and a Copy button, and lets keyboard users scroll it. */
const decorateCodeBlocks = (container) => {
  for (const pre of container.querySelectorAll("pre")) {
    const code = pre.querySelector("code")
    const language = /language-([\w+#.-]+)/.exec(code?.className ?? "")?.[1] ?? "code"
    const block = document.createElement("div")
    block.className = "code-block"
    const head = document.createElement("div")
    head.className = "code-head"
    const label = document.createElement("span")
    label.textContent = language
    const copy = document.createElement("button")
    copy.type = "button"
    copy.textContent = "Copy"
    copy.setAttribute("aria-label", `Copy the ${language} code`)
    copy.addEventListener("click", () => copyText(copy, pre.textContent ?? ""))
    head.append(label, copy)
    pre.tabIndex = 0
    pre.replaceWith(block)
    block.append(head, pre)
  }
}

/** Renders Markdown into `container`, sanitised. */
export const renderMarkdown = (container, text) => {
  container.innerHTML = DOMPurify.sanitize(marked.parse(text), purifyConfig)
  decorateCodeBlocks(container)
}
