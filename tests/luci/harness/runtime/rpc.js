'use strict';
'require baseclass';

/*
 * Stand-in for LuCI's rpc.js: rpc.declare() returns a function that sends one
 * JSON-RPC 2.0 "call" to the ubus endpoint and post-processes the [code, data] reply
 * with `expect`, `filter` and `reject` as LuCI does.
 */

let requestId = 1;

const STATUS_TEXT = {
	0: 'Command OK', 1: 'Invalid command', 2: 'Invalid argument', 3: 'Method not found',
	4: 'Resource not found', 5: 'No data received', 6: 'Permission denied', 7: 'Request timeout',
	8: 'Not supported', 9: 'Unspecified error', 10: 'Connection lost'
};

return baseclass.extend({
	getStatusText(code) {
		return STATUS_TEXT[code] || 'Unknown error';
	},

	call(object, method, args) {
		const body = {
			jsonrpc: '2.0',
			id: requestId++,
			method: 'call',
			params: [ L.env.sessionid, object, method, args || {} ]
		};

		return fetch(L.env.ubuspath, {
			method: 'POST',
			headers: { 'Content-Type': 'application/json' },
			body: JSON.stringify(body)
		}).then((res) => res.json());
	},

	declare(options) {
		const self = this;

		return function() {
			const args = {};
			const params = options.params || [];

			for (let i = 0; i < params.length; i++)
				args[params[i]] = arguments[i];

			return self.call(options.object, options.method, args).then((res) => {
				if (!L.isObject(res) || res.jsonrpc != '2.0')
					L.raise('RPCError', 'RPC call to %s/%s returned an invalid message frame', options.object, options.method);

				if (L.isObject(res.error))
					L.raise('RPCError', 'RPC call to %s/%s failed with error %d: %s', options.object, options.method, res.error.code, res.error.message);

				let ret = null;

				if (Array.isArray(res.result)) {
					if (options.reject && res.result[0] !== 0)
						L.raise('RPCError', 'RPC call to %s/%s failed with ubus code %d: %s', options.object, options.method, res.result[0], self.getStatusText(res.result[0]));

					ret = (res.result.length > 1) ? res.result[1] : res.result[0];
				}

				if (options.expect) {
					for (const key in options.expect) {
						if (ret != null && key != '')
							ret = ret[key];

						if (ret == null || Object.prototype.toString.call(ret) != Object.prototype.toString.call(options.expect[key]))
							ret = options.expect[key];

						break;
					}
				}

				if (typeof options.filter == 'function')
					ret = options.filter(ret, args);

				return ret;
			});
		};
	}
});
