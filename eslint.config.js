// Lint rules for every TypeScript and JavaScript file: ESLint's and typescript-eslint's recommended
// sets, React's hooks rules for the Lab, and eslint-config-prettier last so formatting is Prettier's
// alone (npm run lint runs both; npm run format rewrites).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';
import reactHooks from 'eslint-plugin-react-hooks';
import globals from 'globals';

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**',
      '**/dist/**',
      '**/*.d.ts',
      'schemas/src/generated/**',
      'lab-extension/lib/**',
      'lab-extension/af_gateway_lab/labextension/**',
      'ui-tests/test-results/**',
      'ui-tests/playwright-report/**',
      '.venv/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { languageOptions: { globals: { ...globals.node } } },
  {
    files: ['lab-extension/src/**/*.{ts,tsx}'],
    plugins: { 'react-hooks': reactHooks },
    // The two classic hooks rules (the React Compiler's stricter rules are not used: the Lab is not compiled by it).
    rules: { 'react-hooks/rules-of-hooks': 'error', 'react-hooks/exhaustive-deps': 'warn' },
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    // A leading underscore says "deliberately unused".
    rules: { '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }] },
  },
  prettier,
);
