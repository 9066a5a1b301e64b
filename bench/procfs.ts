// What the kernel says about the processes under test (`/proc`): CPU time, scheduling delay, RSS.

import { readdirSync, readFileSync } from 'node:fs';

/** CPU seconds (user + system) a process has used so far; NaN when it cannot be read. */
export function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // utime and stime are fields 14 and 15 of /proc/PID/stat, in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** The JVM of the selected test broker (both may run at once; each script's instance is told apart). */
export function brokerPid(kind: 'artemis' | 'classic'): number | null {
  const marker =
    kind === 'classic'
      ? '-Dactivemq.base=/var/lib/activemq/main'
      : '-Dartemis.instance=/var/lib/artemis-fastmon';
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('java') && cmdline.split('\0').includes(marker)) return Number(entry);
    } catch {}
  }
  return null;
}

/** Milliseconds a thread has run, and waited runnable for a CPU, so far (`/proc/.../schedstat`). */
export function schedMs(pid: number): { ran: number; waited: number } {
  try {
    const [ran, waited] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map(Number);
    return { ran: (ran as number) / 1e6, waited: (waited as number) / 1e6 };
  } catch {
    return { ran: Number.NaN, waited: Number.NaN };
  }
}

/** Busy and total jiffies of the whole machine so far (`/proc/stat`). */
export function machineJiffies(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/).slice(1);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields.map(Number) as number[];
  const busy = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
  return { busy, total: busy + (idle ?? 0) + (iowait ?? 0) };
}

/** Resident set size of a process, in MB. */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

/** Threads of a process (V8's and libuv's as well as worker threads); NaN when it cannot be read. */
export function threadCount(pid: number): number {
  try {
    return Number(/Threads:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
  } catch {
    return Number.NaN;
  }
}
