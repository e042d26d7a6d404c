import { describe, expect, it } from 'vitest';
import { telemetry } from '../src/index.js';

describe('telemetry options', () => {
  it('a wrong option throws naming it', () => {
    expect(() => telemetry({ tracer: {} as never })).toThrow(/telemetry\(\): option 'tracer': must be an OpenTelemetry Tracer/);
    expect(() => telemetry({ onUsage: 'log' as never })).toThrow(/option 'onUsage'/);
    expect(() => telemetry({ recordContent: 'yes' as never })).toThrow(/option 'recordContent'/);
    expect(() => telemetry({ exporter: 'otlp' } as never)).toThrow(/unknown option 'exporter'/);
  });
});
