// ESLint for luci-app-netpath, after LuCI's own eslint.config.mjs: views are classic
// scripts that end in a top-level `return view.extend(...)`, and the modules named in
// their 'require ...' pragmas arrive as variables.
const luciGlobals = {
	L: 'readonly', E: 'readonly', _: 'readonly', N_: 'readonly',
	baseclass: 'readonly', dom: 'readonly', form: 'readonly', poll: 'readonly', rpc: 'readonly',
	uci: 'readonly', ui: 'readonly', view: 'readonly', validation: 'readonly', schema: 'readonly'
};

const browserGlobals = {
	window: 'readonly', document: 'readonly', fetch: 'readonly', CustomEvent: 'readonly',
	console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', requestAnimationFrame: 'readonly'
};

export default [
	{
		files: [ '**/*.js' ],
		languageOptions: {
			ecmaVersion: 2022,
			sourceType: 'script',
			parserOptions: { ecmaFeatures: { globalReturn: true } },
			globals: { ...luciGlobals, ...browserGlobals }
		},
		linterOptions: { reportUnusedDisableDirectives: 'error' },
		rules: {
			'no-undef': 'error',
			'no-unused-vars': [ 'error', { args: 'none', caughtErrors: 'none' } ],
			'no-redeclare': 'error',
			'no-dupe-keys': 'error',
			'no-duplicate-case': 'error',
			'no-unreachable': 'error',
			'no-const-assign': 'error',
			'no-self-assign': 'error',
			'no-constant-condition': [ 'error', { checkLoops: false } ],
			'no-implicit-globals': 'error',
			'no-var': 'error',
			'semi': [ 'error', 'always' ],
			'strict': [ 'error', 'global' ],
			// LuCI's build minifies views with jsmin, which misreads a regex literal
			// right after `return` (openwrt/luci#8020).
			'no-restricted-syntax': [ 'error', ...[
				'ReturnStatement > Literal[regex]',
				'ReturnStatement > MemberExpression > Literal.object[regex]',
				'ReturnStatement > CallExpression > MemberExpression.callee > Literal.object[regex]'
			].map((selector) => ({
				selector: selector,
				message: 'jsmin breaks on a regex literal right after return; use RegExp() or a named constant'
			})) ]
		}
	}
];
