'use strict';
'require baseclass';
'require form';
'require ui';

/*
 * The rules of NetPath's config schema (compiler/validate.py) that a browser can
 * check, so a form refuses what `netpath check` would refuse before anything is saved.
 * Each check takes the text of a field and returns true or a message for the user.
 * Cross-references (a member's interface exists, ...) are left to the selects that
 * only offer existing names, and the rest to the compiler when the service reloads.
 */

const NAME_RE = new RegExp('^[A-Za-z0-9_]{1,32}$');
const TABLE_RE = new RegExp('^[A-Za-z][A-Za-z0-9_]{0,31}$');
const DEVICE_RE = new RegExp('^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$');
const DNS_NAME_RE = new RegExp('^(\\.|([A-Za-z0-9_]([A-Za-z0-9_-]{0,62})\\.?)+)$');
const ADDRESS_LIKE_RE = new RegExp('^[0-9.]+$|:');
const URL_RE = new RegExp('^https?://[A-Za-z0-9._~:/?#\\[\\]@!$&()*+,;=%-]+$');
const INTEGER_RE = new RegExp('^[0-9]+$');
const DECIMAL_RE = new RegExp('^[0-9]+(\\.[0-9]+)?$|^\\.[0-9]+$');
const PORTS_SPLIT_RE = new RegExp('[,\\s]+');
const PORT_RANGE_RE = new RegExp('^([0-9]{1,5})(?:[-:]([0-9]{1,5}))?$');
const IPV4_RE = new RegExp('^(0|[1-9][0-9]{0,2})\\.(0|[1-9][0-9]{0,2})\\.(0|[1-9][0-9]{0,2})\\.(0|[1-9][0-9]{0,2})$');
const HEX_WORD_RE = new RegExp('^[0-9A-Fa-f]{1,4}$');
const MASK_RE = new RegExp('^(0[xX])?[0-9A-Fa-f]{1,8}$');

/* Words nft reads as keywords anywhere in a command: no table may be called so, as
 * NFT_KEYWORDS in agent/names.py (tests/luci/test_luci_schema.py compares them). */
const NFT_KEYWORDS = [
	'accept', 'add', 'ah', 'all', 'and', 'arp', 'bridge', 'cgroup', 'chain', 'comment', 'comp',
	'constant', 'continue', 'counter', 'cpu', 'create', 'ct', 'day', 'dccp', 'define', 'delete',
	'describe', 'destroy', 'device', 'devices', 'dnat', 'drop', 'dst', 'dup', 'dynamic', 'ecn',
	'element', 'elements', 'eq', 'esp', 'ether', 'exists', 'expires', 'export', 'exthdr', 'fib',
	'flags', 'flow', 'flowtable', 'flush', 'frag', 'fwd', 'ge', 'geneve', 'get', 'goto', 'gre',
	'gretap', 'gt', 'handle', 'hbh', 'hook', 'hour', 'ibriport', 'ibrname', 'icmp', 'icmpv6', 'igmp',
	'iif', 'iifgroup', 'iifname', 'iiftype', 'import', 'include', 'index', 'inet', 'insert',
	'interval', 'ip', 'ip6', 'ipsec', 'jhash', 'jump', 'last', 'le', 'limit', 'list', 'log', 'lshift',
	'lt', 'map', 'mark', 'masquerade', 'meta', 'meter', 'mh', 'missing', 'monitor', 'ne', 'netdev',
	'nftrace', 'not', 'notrack', 'numgen', 'obriport', 'obrname', 'offload', 'oif', 'oifgroup',
	'oifname', 'oiftype', 'or', 'osf', 'pkttype', 'policy', 'position', 'priority', 'queue', 'quota',
	'random', 'redefine', 'redirect', 'reject', 'rename', 'replace', 'reset', 'return', 'rshift',
	'rt', 'rt0', 'rt2', 'rtclassid', 'rule', 'ruleset', 'sctp', 'secmark', 'set', 'size', 'skgid',
	'skuid', 'snat', 'socket', 'srh', 'symhash', 'synproxy', 'table', 'tcp', 'th', 'time', 'timeout',
	'tproxy', 'tunnel', 'type', 'typeof', 'udp', 'udplite', 'undefine', 'update', 'vlan', 'vmap',
	'vni', 'vxlan', 'xor', 'xt'
];

const PROTOCOLS = [ 'all', 'tcp', 'udp', 'icmp', 'icmpv6', 'esp', 'ah', 'gre', 'sctp', 'udplite' ];
const PORT_PROTOCOLS = [ 'all', 'tcp', 'udp', 'sctp', 'udplite', '6', '17' ];

function parseIPv4(text) {
	const m = IPV4_RE.exec(text);

	if (!m)
		return null;

	const bytes = [ +m[1], +m[2], +m[3], +m[4] ];

	return bytes.every((b) => b <= 255) ? bytes : null;
}

/* 8 words, or null; accepts '::' shortening and a trailing dotted quad. */
function parseIPv6(text) {
	let tail = [];

	if (text.indexOf('.') != -1) {
		const cut = text.lastIndexOf(':');
		const v4 = (cut < 0) ? null : parseIPv4(text.substring(cut + 1));

		if (!v4)
			return null;

		tail = [ v4[0] * 256 + v4[1], v4[2] * 256 + v4[3] ];
		text = text.substring(0, cut + 1);

		if (!text.endsWith('::'))
			text = text.substring(0, text.length - 1);
	}

	const halves = text.split('::');

	if (halves.length > 2)
		return null;

	const words = (part) => (part === '' ? [] : part.split(':'));
	const head = words(halves[0]);
	const rest = (halves.length == 2) ? words(halves[1]) : [];
	const total = head.length + rest.length + tail.length;

	if (!head.concat(rest).every((w) => HEX_WORD_RE.test(w)))
		return null;

	if (halves.length == 2 ? total > 7 : total != 8)
		return null;

	const zeros = new Array(8 - total).fill(0);

	return head.map((w) => parseInt(w, 16))
		.concat(halves.length == 2 ? zeros : [])
		.concat(rest.map((w) => parseInt(w, 16)))
		.concat(tail);
}

function family(text) {
	if (parseIPv4(text))
		return 'ipv4';
	if (parseIPv6(text))
		return 'ipv6';
	return null;
}

/* LuCI shows a datatype's complaint as "Expecting: ..."; say it the same way. */
function expecting(what) {
	return _('Expecting: %s').format(what);
}

function bitCount(n) {
	let count = 0;

	for (; n; n = Math.floor(n / 2))
		count += n % 2;

	return count;
}

/*
 * The value an option has in the form right now, else in the config, else `fallback`.
 * While LuCI re-renders a form (dialog Save, Save & Apply) a sibling's widget is already
 * gone from the DOM registry and formvalue() throws: the stored value stands in.
 */
function fieldValue(section, section_id, option, fallback) {
	let value;

	try {
		value = section.formvalue(section_id, option);
	}
	catch (e) {
		value = null;
	}

	if (value == null || value === '' || (Array.isArray(value) && !value.length))
		value = section.cfgvalue(section_id, option);

	return (value == null || value === '') ? fallback : value;
}

/* A UCI list, or an option holding words (the compiler splits such an option on spaces). */
function listOf(value) {
	if (Array.isArray(value))
		return value;

	return String(value || '').split(/\s+/).filter((v) => v);
}

/*
 * A grid of named sections of one UCI type (interface, member, policy, rule) whose "Add"
 * refuses a name the compiler would refuse, instead of saving it and failing at reload.
 * `message` is the translated sentence shown for a bad name.
 */
function namedGrid(map, type, title, addTitle, message) {
	const s = map.section(form.GridSection, type, title);
	s.addremove = true;
	s.anonymous = false;
	s.nodescriptions = true;
	s.addbtntitle = addTitle;
	s.handleAdd = function(ev, name) {
		if (!NAME_RE.test(name || '')) {
			ui.addNotification(null, E('p', [ message ]), 'warning');
			return Promise.resolve();
		}

		return form.GridSection.prototype.handleAdd.apply(this, [ ev, name ]);
	};

	/* A value equal to the option's default (which is the compiler's) is left out of the
	 * file instead of written, so saving a dialog writes only what the user set. */
	const addOption = s.option;
	s.option = function() {
		const o = addOption.apply(this, arguments);
		const write = o.write;

		o.write = function(section_id, value) {
			if (this.default != null && String(value) == String(this.default))
				return this.remove(section_id);

			return write.call(this, section_id, value);
		};

		return o;
	};

	return s;
}

/*
 * Whether a rule section (as the uci module lists it) matches every connection of its
 * family, as catch_all() in compiler/resolve.py: proto all, no ports, device or sets, and
 * no address narrower than /0 (mwan3's habit: dest_ip 0.0.0.0/0).
 */
function catchAll(rule) {
	const set = (value) => value != null && value !== '' && !(Array.isArray(value) && !value.length);
	const everything = (prefix) => [ '0', '0.0.0.0', '::' ].indexOf(String(prefix).trim().split('/')[1]) != -1;

	return (!set(rule.proto) || rule.proto == 'all')
		&& ![ 'src_port', 'dest_port', 'src_iface', 'ipset', 'src_ipset' ].some((option) => set(rule[option]))
		&& [ 'src_ip', 'dest_ip' ].every((option) => listOf(rule[option]).every(everything));
}

/* An action's rejected call (access denied, session expired, ...) as a notification. */
function showError(err) {
	ui.addNotification(null, E('p', [ (err && err.message) ? err.message : String(err) ]), 'danger');
}

return baseclass.extend({
	NAME_RE: NAME_RE,
	namedGrid: namedGrid,
	fieldValue: fieldValue,
	catchAll: catchAll,
	showError: showError,
	listOf: listOf,
	TRACK_METHODS: [ 'ping', 'httping', 'dns', 'arping', 'none' ],
	FLUSH_EVENTS: [ 'ifup', 'ifdown', 'connected', 'disconnected' ],
	LOG_LEVELS: [ 'emerg', 'alert', 'crit', 'err', 'warn', 'notice', 'info', 'debug' ],
	DNS_TYPES: [ 'A', 'AAAA', 'NS', 'SOA', 'TXT', 'MX', 'CNAME', 'PTR' ],
	MODES: [ 'balanced', 'failover', 'round-robin', 'hash', 'weighted', 'random' ],
	LAST_RESORTS: [ 'unreachable', 'blackhole', 'default' ],
	SPECIAL_TARGETS: [ 'unreachable', 'blackhole', 'default' ],
	PROTOCOLS: PROTOCOLS,
	NFT_KEYWORDS: NFT_KEYWORDS,
	PORT_PROTOCOLS: PORT_PROTOCOLS,
	MAX_ID: 252,
	MAX_MEMBERS_PER_POLICY: 10,

	family: family,

	name(value) {
		return NAME_RE.test(value) ? true : expecting(_('1-32 characters: letters, digits, underscore'));
	},

	device(value) {
		return DEVICE_RE.test(value) ? true : expecting(_('a device name: 1-15 characters, letters, digits, "_", "." or "-", not starting with a punctuation mark'));
	},

	tableName(value) {
		if (!TABLE_RE.test(value))
			return expecting(_('an nft table name: a letter, then up to 31 letters, digits or "_"'));

		return (NFT_KEYWORDS.indexOf(value) == -1) ? true : _('%s is a word of nft\'s language; choose another table name').format(value);
	},

	/* Whole numbers lo..hi (hi may be null: no upper bound). */
	integer(lo, hi) {
		return (value) => {
			const text = String(value).trim();

			if (!INTEGER_RE.test(text))
				return expecting(_('a whole number'));

			const n = parseInt(text, 10);

			if (n < lo || (hi != null && n > hi))
				return (hi != null) ? expecting(_('a whole number from %d to %d').format(lo, hi)) : expecting(_('a whole number of at least %d').format(lo));

			return true;
		};
	},

	/* Decimal numbers lo..hi, such as seconds (0.2) or milliseconds. */
	number(lo, hi) {
		return (value) => {
			const text = String(value).trim();

			if (!DECIMAL_RE.test(text))
				return expecting(_('a number (fractions allowed, e.g. 0.5)'));

			const n = parseFloat(text);

			return (n >= lo && n <= hi) ? true : expecting(_('a number from %s to %s').format(String(lo), String(hi)));
		};
	},

	/* A hex mark mask with 3..8 bits set, as compiler/validate.py Mask. */
	mask(value) {
		const text = String(value).trim();

		if (!MASK_RE.test(text))
			return expecting(_('a hex mark mask such as 0x3F00'));

		const n = parseInt(text.replace(/^0[xX]/, ''), 16);

		if (!(n > 0 && n <= 0xFFFFFFFF))
			return expecting(_('a non-zero 32-bit mask'));

		const bits = bitCount(n);

		if (bits < 3 || bits > 8)
			return expecting(_('a mask with 3 to 8 bits set (this one has %d)').format(bits));

		return true;
	},

	address(value) {
		return family(String(value)) ? true : expecting(_('an IP address'));
	},

	addressOf(wanted) {
		return (value) => {
			const fam = family(String(value));

			if (!fam)
				return expecting(_('an IP address'));

			return (!wanted || fam == wanted) ? true : expecting(_('an %s address (the interface\'s family)').format(wanted == 'ipv6' ? 'IPv6' : 'IPv4'));
		};
	},

	/* An address, address/length or address/netmask, as compiler/validate.py Prefix. */
	prefix(value) {
		const text = String(value).trim();
		const slash = text.indexOf('/');
		const addr = (slash < 0) ? text : text.substring(0, slash);
		const fam = family(addr);

		if (!fam)
			return expecting(_('an address or prefix (e.g. 192.168.1.0/24)'));

		if (slash < 0)
			return true;

		const mask = text.substring(slash + 1);

		if (INTEGER_RE.test(mask))
			return (+mask <= (fam == 'ipv4' ? 32 : 128)) ? true : expecting(_('a prefix length up to %d').format(fam == 'ipv4' ? 32 : 128));

		return (family(mask) == fam) ? true : expecting(_('a prefix length or a netmask of the same family'));
	},

	/* "443", "80,443", "1000-2000", "1024:2048", as compiler/validate.py Ports. */
	ports(value) {
		const parts = String(value).trim().split(PORTS_SPLIT_RE).filter((p) => p !== '');

		if (!parts.length)
			return expecting(_('a port or port range (e.g. 443, 80,443, 1000-2000)'));

		for (const part of parts) {
			const m = PORT_RANGE_RE.exec(part);

			if (!m)
				return expecting(_('"%s" is not a port or port range (e.g. 443, 80,443, 1000-2000)').format(part));

			const lo = +m[1], hi = (m[2] != null) ? +m[2] : lo;

			if (lo < 1 || lo > 65535 || hi < 1 || hi > 65535)
				return expecting(_('"%s": ports are 1..65535').format(part));

			if (lo > hi)
				return expecting(_('"%s": the range starts after it ends').format(part));
		}

		return true;
	},

	proto(value) {
		const text = String(value).trim().toLowerCase();

		if (PROTOCOLS.indexOf(text) != -1 || (INTEGER_RE.test(text) && +text <= 255))
			return true;

		return expecting(_('one of %s, or a protocol number 0..255').format(PROTOCOLS.join(', ')));
	},

	/* As compiler/validate.py TrackTarget: an address one host answers, or a host name;
	 * what looks like an address (digits and dots, or a colon) must be one. */
	trackTarget(value) {
		const text = String(value).trim();
		const v4 = parseIPv4(text);
		const v6 = v4 ? null : parseIPv6(text);

		if (v4 || v6) {
			const never = v4
				? ((v4.every((b) => b == 0) && _('the unspecified address'))
					|| (v4[0] >= 224 && v4[0] <= 239 && _('a multicast address'))
					|| (v4.every((b) => b == 255) && _('the broadcast address')))
				: ((v6.every((w) => w == 0) && _('the unspecified address'))
					|| ((v6[0] >> 8) == 0xff && _('a multicast address')));

			return never ? _('%s is %s; no probe to it is ever answered by one host').format(text, never) : true;
		}

		if (ADDRESS_LIKE_RE.test(text))
			return expecting(_('a valid IP address'));

		if (text != '.' && text.length <= 253 && DNS_NAME_RE.test(text))
			return true;

		return expecting(_('an IP address or a host name'));
	},

	url(value) {
		return URL_RE.test(value) ? true : expecting(_('an http:// or https:// URL'));
	},

	dnsName(value) {
		return (value.length <= 253 && DNS_NAME_RE.test(value)) ? true : expecting(_('a DNS name'));
	},

	/* Adapt a check to form option validate(section_id, value); empty is left to rmempty. */
	option(check) {
		return function(section_id, value) {
			if (value == null || value === '' || (Array.isArray(value) && !value.length))
				return true;

			return check(value);
		};
	}
});
