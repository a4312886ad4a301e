// /api/af/workflows: for now the spec check that submission will run first (runs come next).
import type { FastifyInstance } from 'fastify';
import type { WorkflowBundle, WorkflowValidation } from '@af-gateway/schemas';
import { loadWorkflow } from './workflow-loader.js';

const errors = { '4xx': { $ref: 'error.json' }, '5xx': { $ref: 'error.json' } } as const;

export async function workflowRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: WorkflowBundle }>('/api/af/workflows/validate', {
    schema: {
      tags: ['workflows'],
      summary: 'Check a yadage-style workflow and its step files; every problem with its JSON path and file',
      body: { $ref: 'workflow-bundle.json' },
      response: { 200: { $ref: 'workflow-validation.json' }, ...errors },
    },
  }, async (req): Promise<WorkflowValidation> => {
    const { spec, problems } = loadWorkflow(req.body.entry, req.body.files);
    return spec ? { valid: true, stages: spec.stages.map((s) => s.name), errors: [] } : { valid: false, errors: problems };
  });
}
