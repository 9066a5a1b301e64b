// Entry point of the client's message sources; the modules live in ./sources/ (one per transport).

export * from './sources/index.js';
