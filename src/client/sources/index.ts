// The message sources of `swf-fastmon client`: the broker, swf-monitor's SSE relay, or a local catalog.

export { type CatalogSourceOptions, catalogRowMessage, catalogSource } from './catalog.js';
export type { ClientMessage, Source, SourceStatus } from './source.js';
export { type SseSourceOptions, sseSource } from './sse.js';
export { type StompSourceOptions, stompSource } from './stomp.js';
