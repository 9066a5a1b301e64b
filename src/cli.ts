#!/usr/bin/env node
// The `swf-fastmon` executable: dispatches to subcommands.

// First: sets V8's young generation before the other modules load (src/ops/young-generation.ts).
import './ops/young-generation.js';
import { readFileSync } from 'node:fs';
import { agentCommand } from './cli/agent-command.js';
import { catalogCommand } from './cli/catalog-command.js';
import { clientCommand } from './cli/client-command.js';
import { genCommand } from './cli/gen-command.js';
import { configMarkdown, writeConfigTable } from './cli/help.js';
import { scanCommand, watchCommand } from './cli/scan-command.js';
import { FastmonError, USAGE_CODES } from './errors.js';
import { redactText } from './log/redact.js';
import { letYoungGenerationGrow } from './ops/young-generation.js';

interface Command {
  summary: string;
  run: (argv: readonly string[]) => Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  agent: {
    summary: 'the fast monitoring agent (stf_ready from ActiveMQ, or --replay FILE)',
    run: agentCommand,
  },
  scan: { summary: 'one pass over STF directories (registers what it finds)', run: scanCommand },
  watch: { summary: 'scan, then watch directories for new STFs', run: watchCommand },
  gen: {
    summary: 'write a synthetic run of STF files (optionally publishing it as the DAQ)',
    run: genCommand,
  },
  client: {
    summary: 'terminal client: TF notifications live, per-run statistics, dashboard',
    run: clientCommand,
  },
  catalog: {
    summary: 'what the local store holds: rows per run, newest samples, outbox, ledger',
    run: catalogCommand,
  },
};

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

function help(): string {
  const names = Object.keys(COMMANDS);
  const width = Math.max(...names.map((n) => n.length)) + 4;
  return `swf-fastmon ${version()}: fast monitoring agent of the ePIC streaming workflow testbed

Usage: swf-fastmon <command> [options]      (swf-fastmon <command> --help for its options)

Commands:
${names
  .map((n) => {
    const c = COMMANDS[n] as Command;
    return `  ${n.padEnd(width)}${c.summary}`;
  })
  .join('\n')}
`;
}

async function main(argv: readonly string[]): Promise<number> {
  // Every module is loaded by now (static imports): the young generation may grow from here on.
  letYoungGenerationGrow();
  const [name, ...rest] = argv;
  if (name === undefined) {
    // No command is a mistake (a script that lost its argument): usage on stderr, exit 2.
    process.stderr.write(help());
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (name === 'config-table') {
    // Maintainers' tool: prints docs/configuration.md's table, or rewrites it in place (--write FILE).
    if (rest[0] === '--write' && rest[1]) {
      writeConfigTable(rest[1]);
      return 0;
    }
    process.stdout.write(`${configMarkdown()}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`swf-fastmon: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const usage = err instanceof FastmonError && USAGE_CODES.has(err.code);
    // Our own errors say what is wrong; a stack trace is for the unexpected.
    const text =
      err instanceof FastmonError
        ? `${err.code}: ${err.message}`
        : err instanceof Error
          ? (err.stack ?? err.message)
          : String(err);
    process.stderr.write(`swf-fastmon: ${redactText(text)}\n`);
    process.exitCode = usage ? 2 : 1;
  },
);
