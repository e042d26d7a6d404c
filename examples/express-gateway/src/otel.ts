import { context, trace } from '@opentelemetry/api';

/**
 * The app sets up the OpenTelemetry SDK itself; the gateway packages only use the API.
 * OTEL_TRACES_EXPORTER=console prints spans, `otlp` sends them to OTEL_EXPORTER_OTLP_ENDPOINT,
 * unset installs no SDK (every span is a no-op).
 */
export async function setUpTracing(): Promise<(() => Promise<void>) | undefined> {
  const exporterName = process.env.OTEL_TRACES_EXPORTER;
  if (!exporterName || exporterName === 'none') return undefined;
  const { TracerProvider, SimpleSpanProcessor, BatchSpanProcessor, ConsoleSpanExporter } = await import('@opentelemetry/sdk-trace');
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  let processor;
  if (exporterName === 'console') {
    processor = new SimpleSpanProcessor({ exporter: new ConsoleSpanExporter() });
  } else if (exporterName === 'otlp') {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
    processor = new BatchSpanProcessor({ exporter: new OTLPTraceExporter() });
  } else {
    throw new Error(`OTEL_TRACES_EXPORTER=${exporterName}: use console, otlp or none`);
  }
  const provider = new TracerProvider({ spanProcessors: [processor] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  console.log(`tracing: OTEL_TRACES_EXPORTER=${exporterName}`);
  return () => provider.shutdown();
}
