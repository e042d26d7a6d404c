import { context, trace } from '@opentelemetry/api';

/**
 * The app sets up the OpenTelemetry SDK itself; the gateway packages only use the API.
 * OTEL_TRACES_EXPORTER=console prints spans, `otlp` sends them to OTEL_EXPORTER_OTLP_ENDPOINT,
 * unset installs no SDK (every span is a no-op).
 */
export async function setUpTracing(
  exporterName: 'console' | 'otlp' | undefined,
  logger: { info(fields: object, message: string): void },
): Promise<(() => Promise<void>) | undefined> {
  if (!exporterName) return undefined;
  const { TracerProvider, SimpleSpanProcessor, BatchSpanProcessor, ConsoleSpanExporter } = await import('@opentelemetry/sdk-trace');
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  let processor;
  if (exporterName === 'console') {
    processor = new SimpleSpanProcessor({ exporter: new ConsoleSpanExporter() });
  } else {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
    processor = new BatchSpanProcessor({ exporter: new OTLPTraceExporter() });
  }
  const provider = new TracerProvider({ spanProcessors: [processor] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  logger.info({ exporter: exporterName }, 'tracing on');
  return () => provider.shutdown();
}
