import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AGENT } from '../src/cli/agent-command.js';
import { parseCommandLine } from '../src/cli/options.js';
import { loadConfig, printableConfig } from '../src/config/load.js';

function tempDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'fastmon-config-'));
}

describe('configuration', () => {
  it('has documented defaults when nothing is set', () => {
    const { config } = loadConfig({ env: {}, cwd: tempDir() });
    expect(config.broker.subscription).toBe('/topic/epictopic');
    expect(config.broker.broadcast).toEqual(['/topic/epictopic']);
    expect(config.broker.port).toBe(61612);
    expect(config.sampling).toMatchObject({
      stfSelectionFraction: 1,
      tfFilesPerStf: 7,
      tfSizeFraction: 0.15,
      tfCountDefault: 1000,
      tfSequenceStart: 1,
      sampleOnlyInPhysics: true,
    });
    expect(config.agent.mode).toBe('message');
    expect(config.agent.namespace).toBe('');
    expect(config.agent.workers).toBeGreaterThan(0);
  });

  it('takes flags over environment over the TOML file over defaults', () => {
    const dir = tempDir();
    const file = path.join(dir, 'fastmon.toml');
    writeFileSync(
      file,
      '[sampling]\ntf_files_per_stf = 3\ntf_size_fraction = 0.2\nseed = "file"\n[broker]\nport = 61000\n',
    );
    const env = { FASTMON_TF_FILES_PER_STF: '5', ACTIVEMQ_PORT: '61613' };
    const flags = parseCommandLine(AGENT, ['--tf-files-per-stf', '9']).config;
    const { config, provenance } = loadConfig({ env, flags, configFile: file, cwd: dir });
    expect(config.sampling.tfFilesPerStf).toBe(9);
    expect(provenance['sampling.tf_files_per_stf']).toBe('flag');
    expect(config.broker.port).toBe(61613);
    expect(provenance['broker.port']).toBe('env');
    expect(config.sampling.tfSizeFraction).toBe(0.2);
    expect(config.sampling.seed).toBe('file');
    expect(provenance['sampling.seed']).toBe('file');
    expect(config.sampling.tfCountDefault).toBe(1000);
  });

  it('reads the testbed variables unchanged', () => {
    const env = {
      ACTIVEMQ_HOST: 'pandaserver02.sdcc.bnl.gov',
      ACTIVEMQ_PORT: '61612',
      ACTIVEMQ_USER: 'epic',
      ACTIVEMQ_PASSWORD: 'brokerpass',
      ACTIVEMQ_USE_SSL: 'True',
      ACTIVEMQ_SSL_CA_CERTS: '/etc/ca.pem',
      SWF_MONITOR_URL: 'https://pandaserver02.sdcc.bnl.gov/swf-monitor/',
      SWF_API_TOKEN: 'abcdef0123456789abcdef0123456789abcdef01',
      SWF_LOG_LEVEL: 'WARNING',
    };
    const { config } = loadConfig({ env, cwd: tempDir() });
    expect(config.broker).toMatchObject({
      host: 'pandaserver02.sdcc.bnl.gov',
      user: 'epic',
      password: 'brokerpass',
      useSsl: true,
    });
    expect(config.broker.sslCaCerts).toBe('/etc/ca.pem');
    expect(config.monitor.url).toBe('https://pandaserver02.sdcc.bnl.gov/swf-monitor');
    expect(config.monitor.token).toBe(env.SWF_API_TOKEN);
    expect(config.agent.logLevel).toBe('warn');
  });

  it('takes the namespace from [testbed] namespace of SWF_TESTBED_CONFIG, a bare name meaning workflows/<name>', () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'workflows'));
    writeFileSync(path.join(dir, 'workflows', 'mine.toml'), '[testbed]\nnamespace = "torre2"\n');
    expect(loadConfig({ env: { SWF_TESTBED_CONFIG: 'mine.toml' }, cwd: dir }).config.agent.namespace).toBe(
      'torre2',
    );
    const abs = path.join(dir, 'workflows', 'mine.toml');
    expect(loadConfig({ env: { SWF_TESTBED_CONFIG: abs }, cwd: '/' }).config.agent.namespace).toBe('torre2');
    // From the testbed directory, workflows/testbed.toml is found without the variable, as BaseAgent does.
    writeFileSync(path.join(dir, 'workflows', 'testbed.toml'), '[testbed]\nnamespace = "wenauseic"\n');
    expect(loadConfig({ env: {}, cwd: dir }).config.agent.namespace).toBe('wenauseic');
    // A flag wins.
    const flags = parseCommandLine(AGENT, ['--namespace', 'other']).config;
    expect(
      loadConfig({ env: { SWF_TESTBED_CONFIG: 'mine.toml' }, flags, cwd: dir }).config.agent.namespace,
    ).toBe('other');
  });

  it('refuses a testbed config without a namespace, naming the file', () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'tb.toml'), '[testbed]\nnamespace = ""\n');
    expect(() => loadConfig({ env: { SWF_TESTBED_CONFIG: path.join(dir, 'tb.toml') }, cwd: dir })).toThrow(
      /tb\.toml: \[testbed\] namespace must be a non-empty string/,
    );
  });

  it('rejects FASTMON_MODE values other than message and continuous (the original switched on any value)', () => {
    expect(() => loadConfig({ env: { FASTMON_MODE: 'yes' }, cwd: tempDir() })).toThrow(
      'agent.mode (env FASTMON_MODE): expected one of message, continuous, got "yes"',
    );
    expect(loadConfig({ env: { FASTMON_MODE: 'continuous' }, cwd: tempDir() }).config.agent.mode).toBe(
      'continuous',
    );
  });

  it('names the key, the source and the bad value in every validation error', () => {
    const cwd = tempDir();
    expect(() => loadConfig({ env: { ACTIVEMQ_PORT: 'abc' }, cwd })).toThrow(
      'broker.port (env ACTIVEMQ_PORT): expected an integer >= 1 <= 65535, got "abc"',
    );
    expect(() => loadConfig({ env: { FASTMON_STF_SELECTION_FRACTION: '1.5' }, cwd })).toThrow(
      /sampling\.stf_selection_fraction \(env FASTMON_STF_SELECTION_FRACTION\): expected a number >= 0 <= 1, got "1.5"/,
    );
    expect(() => loadConfig({ env: { ACTIVEMQ_USE_SSL: 'maybe' }, cwd })).toThrow(
      /broker\.use_ssl .* expected true or false, got "maybe"/,
    );
    expect(() =>
      loadConfig({ flags: parseCommandLine(AGENT, ['--subscription', 'epictopic']).config, cwd }),
    ).toThrow(
      /broker\.subscription \(flag --subscription\): a destination must start with \/topic\/ or \/queue\/.*got "epictopic"/,
    );
    const file = path.join(cwd, 'bad.toml');
    writeFileSync(file, '[sampling]\ntf_files_per_stf = "seven"\n');
    expect(() => loadConfig({ configFile: file, cwd })).toThrow(
      /sampling\.tf_files_per_stf \(file .*bad\.toml\): expected an integer/,
    );
    writeFileSync(file, '[sampling]\ntf_file_per_stf = 7\n');
    expect(() => loadConfig({ configFile: file, cwd })).toThrow(/unknown key sampling\.tf_file_per_stf/);
  });

  it('never shows a secret in a validation error or in the printed configuration', () => {
    const secret = 'supersecretpassword';
    const { config } = loadConfig({
      env: { ACTIVEMQ_PASSWORD: secret, SWF_API_TOKEN: 'tok123456789' },
      cwd: tempDir(),
    });
    const printed = JSON.stringify(printableConfig(config));
    expect(printed).not.toContain(secret);
    expect(printed).not.toContain('tok123456789');
    expect(printed).toContain('[redacted]');
  });

  it('parses repeated list flags, --no-<flag> for booleans and refuses unknown options', () => {
    const args = parseCommandLine(AGENT, [
      '--data-root',
      '/a',
      '--data-root=/b',
      '--no-sample-only-in-physics',
      '--replay',
      'x',
      '--http-port',
      '-1',
    ]);
    expect(args.config.get('agent.data_roots')).toEqual(['/a', '/b']);
    expect(args.config.get('sampling.sample_only_in_physics')).toBe('false');
    expect(args.config.get('agent.http_port')).toBe('-1');
    expect(args.values.replay).toBe('x');
    expect(() => parseCommandLine(AGENT, ['--tf-files'])).toThrow(
      "agent: unknown option '--tf-files' (see swf-fastmon agent --help)",
    );
    const { config } = loadConfig({ flags: args.config, cwd: '/' });
    expect(config.agent.dataRoots).toEqual(['/a', '/b']);
    expect(config.sampling.sampleOnlyInPhysics).toBe(false);
  });

  it('splits FASTMON_DATA_ROOTS on ":" like PATH and resolves relative roots', () => {
    const { config } = loadConfig({ env: { FASTMON_DATA_ROOTS: '/data/a:rel/b' }, cwd: '/work' });
    expect(config.agent.dataRoots).toEqual(['/data/a', '/work/rel/b']);
  });
});
