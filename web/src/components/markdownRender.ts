/**
 * Markdown to sanitized HTML (marked + DOMPurify), loaded on demand by Markdown.tsx so neither library is in
 * the initial bundle. Raw HTML in the text is shown as text, never parsed (handing `<img onerror>` even to
 * DOMPurify's parser makes Chromium fetch the image and report a CSP violation); DOMPurify still cleans the
 * output (e.g. `javascript:` links). Mentions `@[Name](user:ID)` become spans with the member's current name.
 */
import { Marked } from 'marked'
import DOMPurify from 'dompurify'

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}

const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html: ({ text }) => escapeHtml(text),
    link({ href, tokens }) {
      const inner = this.parser.parseInline(tokens)
      const mention = /^user:([A-Za-z0-9-]{1,64})$/.exec(href)
      if (mention) return `<a href="#mention" data-user-id="${mention[1]}">${inner}</a>`
      return false
    },
  },
})

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  // Links open in a new tab and never hand this page to the target.
  if (node.tagName === 'A' && node.getAttribute('href')) {
    node.setAttribute('target', '_blank')
    node.setAttribute('rel', 'noopener noreferrer nofollow')
  }
})

export function renderMarkdown(text: string, nameOf: (id: string) => string | null): string {
  const html = marked.parse(text, { async: false })
  // `@[Name](user:ID)` was rendered as `@<a data-user-id>`: make it a span naming the member as they are now.
  const mentions = html.replace(
    /@<a href="#mention" data-user-id="([A-Za-z0-9-]+)">(.*?)<\/a>/g,
    (_m, id: string, name: string) => `<span class="mention" data-user-id="${id}">@${nameOf(id) !== null ? escapeHtml(nameOf(id)!) : name}</span>`,
  )
  return DOMPurify.sanitize(mentions, { FORBID_TAGS: ['style', 'form', 'input', 'textarea', 'select', 'button'], FORBID_ATTR: ['style'] })
}
