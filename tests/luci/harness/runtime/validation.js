'use strict';
'require baseclass';

/*
 * Stand-in for LuCI's validation.js: compiles datatype expressions such as
 * "and(uinteger,range(1,256))" or "ipaddr(1)" and checks a field's value with them,
 * then with the option's own validate function. Only the datatypes in common use are
 * here; an unknown one is an error, never a silent pass.
 */

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function isIPv4(text) {
	const m = IPV4.exec(text);
	return !!m && [ m[1], m[2], m[3], m[4] ].every((b) => +b <= 255);
}

function isIPv6(text) {
	if (!/^[0-9A-Fa-f:.]+$/.test(text) || text.split('::').length > 2)
		return false;

	let words = text.split(':');

	if (text.indexOf('.') != -1) {
		if (!isIPv4(words.pop()))
			return false;
		words = words.concat([ '0', '0' ]);
	}

	const shortened = text.indexOf('::') != -1;
	const filled = words.filter((w) => w !== '');

	if (!filled.every((w) => /^[0-9A-Fa-f]{1,4}$/.test(w)))
		return false;

	return shortened ? filled.length <= 7 : (words.length == 8 && filled.length == 8);
}

function prefixOk(text, max) {
	return /^\d{1,3}$/.test(text) && +text <= max;
}

const TYPES = {
	integer(v) { return /^-?\d+$/.test(v) || _('valid integer value'); },
	uinteger(v) { return /^\d+$/.test(v) || _('positive integer value'); },
	float(v) { return /^-?\d+(\.\d+)?$/.test(v) || _('valid decimal value'); },
	ufloat(v) { return /^\d+(\.\d+)?$/.test(v) || _('positive decimal value'); },
	ip4addr(v, nomask) {
		const [ addr, mask ] = v.split('/');
		return (isIPv4(addr) && (mask == null || (!nomask && (prefixOk(mask, 32) || isIPv4(mask)))))
			|| (nomask ? _('valid IPv4 address') : _('valid IPv4 address or network'));
	},
	ip6addr(v, nomask) {
		const [ addr, mask ] = v.split('/');
		return (isIPv6(addr) && (mask == null || (!nomask && prefixOk(mask, 128))))
			|| (nomask ? _('valid IPv6 address') : _('valid IPv6 address or prefix'));
	},
	ipaddr(v, nomask) {
		return (TYPES.ip4addr(v, nomask) === true || TYPES.ip6addr(v, nomask) === true)
			|| (nomask ? _('valid IP address') : _('valid IP address or prefix'));
	},
	hostname(v) {
		return (v.length <= 253 && (/^[A-Za-z0-9_]+$/.test(v) ||
			(/^[A-Za-z0-9_][A-Za-z0-9_.-]*[A-Za-z0-9]\.?$/.test(v) && /[^0-9.]/.test(v)))) || _('valid hostname');
	},
	host(v) { return (TYPES.hostname(v) === true || TYPES.ipaddr(v, 1) === true) || _('valid hostname or IP address'); },
	uciname(v) { return /^[A-Za-z0-9_]+$/.test(v) || _('valid UCI identifier'); },
	netdevname(v) { return (v != '.' && v != '..' && /^[^:\/%\s]{1,15}$/.test(v)) || _('valid network device name'); },
	port(v) { return (/^\d+$/.test(v) && +v <= 65535) || _('valid port value'); },
	portrange(v) {
		const m = /^(\d+)-(\d+)$/.exec(v);
		return (m ? (+m[1] <= +m[2] && +m[2] <= 65535) : TYPES.port(v) === true) || _('valid port or port range (port1-port2)');
	},
	range(v, lo, hi) {
		return (/^-?\d+(\.\d+)?$/.test(v) && +v >= lo && +v <= hi) || _('value between %s and %s').format(lo, hi);
	},
	min(v, lo) { return (/^-?\d+(\.\d+)?$/.test(v) && +v >= lo) || _('value greater or equal to %s').format(lo); },
	max(v, hi) { return (/^-?\d+(\.\d+)?$/.test(v) && +v <= hi) || _('value smaller or equal to %s').format(hi); },
	maxlength(v, n) { return v.length <= n || _('value with at most %d characters').format(n); },
	minlength(v, n) { return v.length >= n || _('value with at least %d characters').format(n); }
};

/* "name(arg, arg)" -> { name, args }, args being numbers, strings or nested nodes. */
function parse(code) {
	let pos = 0;

	function node() {
		const m = /^\s*([A-Za-z0-9_]+)\s*/.exec(code.substring(pos));

		if (!m)
			throw new SyntaxError('datatype: cannot parse "' + code + '"');

		pos += m[0].length;

		const name = m[1];
		const args = [];

		if (/^-?\d+(\.\d+)?$/.test(name))
			return +name;

		if (code.charAt(pos) == '(') {
			pos++;
			while (code.charAt(pos) != ')') {
				args.push(node());
				while (code.charAt(pos) == ' ')
					pos++;
				if (code.charAt(pos) == ',')
					pos++;
				else if (code.charAt(pos) != ')')
					throw new SyntaxError('datatype: expected "," or ")" in "' + code + '"');
			}
			pos++;
		}

		if (name != 'and' && name != 'or' && !TYPES[name])
			throw new SyntaxError('datatype: unknown type "' + name + '"');

		return { name: name, args: args };
	}

	const tree = node();

	if (pos < code.length)
		throw new SyntaxError('datatype: trailing text in "' + code + '"');

	return tree;
}

function check(tree, value) {
	if (tree.name == 'and') {
		for (const sub of tree.args) {
			const r = check(sub, value);
			if (r !== true)
				return r;
		}
		return true;
	}

	if (tree.name == 'or') {
		const errors = [];
		for (const sub of tree.args) {
			const r = check(sub, value);
			if (r === true)
				return true;
			errors.push(r);
		}
		return _('One of the following: %s').format(errors.join(', '));
	}

	return TYPES[tree.name].apply(null, [ value ].concat(tree.args));
}

return baseclass.extend({
	types: TYPES,

	compile: parse,

	/* true, or the message to show (LuCI prefixes datatype errors with "Expecting: "). */
	validate(datatype, optional, vfunc, value) {
		if (value == null || value === '')
			return optional ? true : _('Expecting: %s').format(_('non-empty value'));

		if (datatype) {
			const r = check(parse(datatype), String(value));
			if (r !== true)
				return _('Expecting: %s').format(r);
		}

		if (typeof vfunc == 'function') {
			const r = vfunc(value);
			if (r !== true)
				return (typeof r == 'string') ? r : _('Invalid value');
		}

		return true;
	}
});
