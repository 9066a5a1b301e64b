// Every size limit the agent applies to what comes in from the broker, in one place (docs/operations.md).

/**
 * STOMP frames as the agent's connection accepts them. stompit's own defaults (1,024-byte lines,
 * 64 headers) are far below what the brokers pass on: ActiveMQ Classic takes SEND frames with up
 * to 1,000 headers of 10 KiB each, Artemis header lines of ~100 KiB (its min-large-message-size).
 * Past stompit's limits its parser fails and the whole connection drops, once per redelivery,
 * and the message is never seen. So the agent's inbound filter (frame-filter.ts) cuts a frame
 * down to these limits before stompit parses it, marks it, and the agent refuses that message
 * alone with a coded error (MESSAGE_HEADERS_TOO_LARGE) naming its id and the limit.
 */
export const FRAME_LIMITS = {
  /** One header line (name, colon, escaped value), in bytes; longer lines are cut to this. */
  maxHeaderLineBytes: 65_536,
  /** Headers of one frame; past it only the STOMP protocol headers are kept. */
  maxHeaders: 1_100,
  /** All header lines of one frame together, in bytes; past it only protocol headers are kept. */
  maxHeaderBytes: 1_048_576,
} as const;

/**
 * The limits stompit's parser itself is given (its connect options `maxLineLength` and
 * `maxHeaders`): above the filter's, with room for the protocol headers the filter always keeps
 * and the header it adds, so the filter is what decides and stompit never fails on a frame.
 */
export function stompitParserLimits(
  limits: { maxHeaderLineBytes: number; maxHeaders: number } = FRAME_LIMITS,
) {
  return { maxLineLength: limits.maxHeaderLineBytes + 1_024, maxHeaders: limits.maxHeaders + 32 };
}

/**
 * Default bound of one message body, in bytes (`agent.max_message_bytes`). Testbed messages are
 * a few hundred bytes; a body past the bound is refused with MESSAGE_TOO_LARGE, and only this
 * many bytes of it are ever held in memory. The subscription's flow control (Artemis'
 * consumer-window-size, in bytes) is sized from the same bound.
 */
export const DEFAULT_MAX_BODY_BYTES = 1_048_576;

/**
 * The flow window per message beyond its body: Artemis counts a frame's encoded size against the
 * window, the body plus the headers it adds (destination, message-id, subscription, timestamps, the
 * producer's own headers). 4 KiB covers them with room to spare.
 */
export const FRAME_HEADER_ALLOWANCE = 4096;

/**
 * Longest value, in characters, of every message field the agent copies into STOMP headers, file
 * names, swf-monitor rows, log lines or metric labels; a longer one makes the message
 * MESSAGE_INVALID, naming the field. swf-monitor's columns are the guide: `run_id` is char(50) in
 * its workflow messages and `run_number` an integer; `stf_filename` and `tf_filename` are
 * varchar(255), and a TF sample's name is the STF's stem plus `_tf_NNN.tf`; checksums are
 * varchar(64), states varchar(64) (machine_state), message types char(50). Namespaces and
 * execution ids (`stf_datataking-wenauseic-0049`) are short names in the testbed.
 */
export const FIELD_LIMITS = {
  msg_type: 64,
  run_id: 50,
  execution_id: 128,
  namespace: 128,
  sender: 256,
  state: 64,
  substate: 64,
  /** The STF's name without its directory (becomes stf_filename and the stem of tf_filename). */
  filename_base: 230,
  /** The whole `filename` field, directories included (Linux PATH_MAX). */
  filename: 4_096,
  file_url: 8_192,
  checksum: 128,
} as const;

export type LimitedField = keyof typeof FIELD_LIMITS;

/** Run bookkeeping: runs tracked at once (the rest are refused and counted). */
export const DEFAULT_MAX_RUNS = 256;
/** Run bookkeeping: a run without any message for this long is closed as timed out. */
export const DEFAULT_RUN_IDLE_TIMEOUT_S = 3_600;
