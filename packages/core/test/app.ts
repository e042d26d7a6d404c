import express from 'express';
import { context, errorHandler, fallbackHandler, modelsHandler, requestId, validate, type ValidateOptions } from '../src/index.js';

/** A minimal Express app around core's stages: validation echoes what would go upstream. */
export function coreApp(options: ValidateOptions = {}) {
  const app = express();
  app.use('/v1', requestId());
  app.post('/v1/chat/completions', validate(options), (req, res) => {
    const ctx = context(req);
    res.json({ body: ctx.body, local: ctx.local, promptTokens: ctx.promptTokens ?? null });
  });
  app.get('/v1/boom', () => {
    throw new Error('secret internal detail');
  });
  app.use('/v1', modelsHandler());
  app.use('/v1', fallbackHandler());
  app.use(errorHandler());
  return app;
}

export const baseBody = () => ({
  model: 'openai/gpt-oss-20b',
  messages: [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Hi' },
    { role: 'user', content: 'What is 2+2?' },
  ],
});
