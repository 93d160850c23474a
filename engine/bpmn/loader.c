/*
 * The BPMN loader: turns the bytes of a BPMN 2.0 file, as Camunda Modeler and bpmn.io write it
 * (Camunda 7 dialect), into the immutable models of model.h, or into a list of every problem found,
 * each with its line and element id.
 *
 * It works in three stages. First the bytes are parsed by libxml2 from memory with a parser that
 * refuses any DOCTYPE, never loads anything from outside, and enforces our own limits on depth,
 * element count and attribute length while it parses (reliability.md §3.1). Then the tree is
 * walked, matching elements and attributes by namespace URI, never by prefix, and everything that
 * certflow cannot execute faithfully (scripts, Java classes, listeners, user tasks, loops, exotic
 * events) is refused by name instead of being skipped. Last, the graph is validated as a whole:
 * references, scopes, start and end events, default flows, boundary events.
 *
 * Error codes are resolved exactly as Camunda 7 does (bpmn-error-semantics.md §2 and §5).
 * Expressions are compiled here (expr/) so that a typo fails at deployment, not at run time.
 * What a delegate name means, and whether such a task plug-in exists, is left to the deployer.
 */
#include "bpmn/model.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlversion.h>

#include "bpmn/model_internal.h"

/* More problems than this in one file are noise; the rest is summarised in one line. */
#define MAX_DIAGS 100
/* Camunda Modeler writes at most a dozen or two attributes on an element. */
#define MAX_ATTRS_PER_ELEMENT 256

/* ---- one call of cf_bpmn_load ---- */

struct def_error {
    const char *code;    /* NULL when the <error> has no errorCode attribute */
    const char *message; /* camunda:errorMessage, or NULL */
};

struct def_message {
    const char *name; /* NULL when the <message> has no name */
};

struct load {
    struct cf_diags *diags;
    size_t base; /* diags->count on entry: what this call added starts here */
    bool capped;

    /* Parse-time state, driven by the SAX callbacks. */
    bool stopped; /* our own checks stopped the parser */
    int depth;
    size_t n_xml_elements;
    startElementNsSAX2Func sax_start;
    endElementNsSAX2Func sax_end;

    /* Tree-walk state shared by every process of the file. */
    struct cf__arena *tmp;      /* strings of <error>/<message>, freed when the call returns */
    struct cf__strmap errors;   /* id -> struct def_error */
    struct cf__strmap messages; /* id -> struct def_message */
    struct cf__strmap ids;      /* every id in use -> its xmlNode, for duplicate detection */
};

static void vreport(struct load *ld, int line, const char *id, const char *fmt, va_list ap)
{
    if (ld->diags->count - ld->base >= MAX_DIAGS) {
        ld->capped = true;
        return;
    }
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    cf_diags_add(ld->diags, line, id, "%s", msg);
}

static void report(struct load *ld, int line, const char *id, const char *fmt, ...) CF_PRINTF(4, 5);
static void report(struct load *ld, int line, const char *id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ld, line, id, fmt, ap);
    va_end(ap);
}

static bool failed(const struct load *ld)
{
    return ld->diags->count > ld->base || ld->capped;
}

/* Problems are reported in file order, however they were found; a stable insertion sort is
 * enough for at most MAX_DIAGS entries. */
static void sort_diags(struct load *ld)
{
    size_t n = ld->diags->count - ld->base;
    /* items is NULL while nothing was reported; offsetting it would be undefined. */
    struct cf_diag *items = n ? ld->diags->items + ld->base : NULL;
    for (size_t i = 1; i < n; i++) {
        struct cf_diag d = items[i];
        size_t j = i;
        while (j > 0 && items[j - 1].line > d.line) {
            items[j] = items[j - 1];
            j--;
        }
        items[j] = d;
    }
    if (ld->capped)
        cf_diags_add(ld->diags, 0, NULL, "too many problems; only the first %d are listed",
                     MAX_DIAGS);
}

/* ---- libxml2 set-up ---- */

static xmlParserInputPtr deny_entity_loader(const char *url, const char *id, xmlParserCtxtPtr ctxt)
{
    /* BPMN files never need an external resource; anything that asks for one (an external DTD,
     * an external entity, XInclude) is hostile or broken. */
    (void)url;
    (void)id;
    (void)ctxt;
    return NULL;
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init_once(void)
{
    xmlInitParser();
    xmlSetExternalEntityLoader(deny_entity_loader);
}

void cf_bpmn_global_init(void)
{
    pthread_once(&global_once, global_init_once);
}

static struct load *load_of(void *ctx)
{
    xmlParserCtxtPtr ctxt = ctx;
    return ctxt ? ctxt->_private : NULL;
}

static int parser_line(xmlParserCtxtPtr ctxt)
{
    return ctxt->input ? ctxt->input->line : 0;
}

static void stop(xmlParserCtxtPtr ctxt, struct load *ld)
{
    ld->stopped = true;
    xmlStopParser(ctxt);
}

static void on_internal_subset(void *ctx, const xmlChar *name, const xmlChar *external_id,
                               const xmlChar *system_id)
{
    /* Called when "<!DOCTYPE name ..." has been read and before any internal subset: stopping
     * here means no entity is ever declared, let alone expanded or fetched. */
    (void)name;
    (void)external_id;
    (void)system_id;
    xmlParserCtxtPtr ctxt = ctx;
    struct load *ld = load_of(ctx);
    report(ld, parser_line(ctxt), NULL,
           "DOCTYPE is not allowed: BPMN needs no DTD, and entities are never expanded");
    stop(ctxt, ld);
}

static void on_start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                             const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                             int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct load *ld = load_of(ctx);
    if (ld->stopped)
        return;
    ld->depth++;
    ld->n_xml_elements++;
    if (ld->depth > CF_BPMN_MAX_DEPTH) {
        report(ld, parser_line(ctxt), NULL,
               "elements are nested more than %d levels deep; a BPMN file needs far fewer",
               CF_BPMN_MAX_DEPTH);
        stop(ctxt, ld);
        return;
    }
    if (ld->n_xml_elements > CF_BPMN_MAX_ELEMENTS) {
        report(ld, parser_line(ctxt), NULL, "the file has more than %d XML elements",
               CF_BPMN_MAX_ELEMENTS);
        stop(ctxt, ld);
        return;
    }
    /* SAX2 passes attributes as (localname, prefix, URI, value, end) tuples. */
    for (int i = 0; i < nb_attributes; i++) {
        const xmlChar *value = attributes[i * 5 + 3];
        const xmlChar *end = attributes[i * 5 + 4];
        if (value && end && end - value > CF_BPMN_MAX_ATTR_LEN) {
            report(ld, parser_line(ctxt), NULL,
                   "attribute %s of <%s> is longer than the limit of %d bytes",
                   (const char *)attributes[i * 5], (const char *)localname, CF_BPMN_MAX_ATTR_LEN);
            stop(ctxt, ld);
            return;
        }
    }
    ld->sax_start(ctx, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes,
                  nb_defaulted, attributes);
}

static void on_end_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                           const xmlChar *uri)
{
    struct load *ld = load_of(ctx);
    if (ld->stopped)
        return;
    ld->depth--;
    ld->sax_end(ctx, localname, prefix, uri);
}

#if LIBXML_VERSION >= 21200
static void on_xml_error(void *user, const xmlError *err)
#else
static void on_xml_error(void *user, xmlErrorPtr err)
#endif
{
    /* libxml2 hands the parser context as user data; the load is hung on it, so that errors of
     * concurrent loads never meet in global state. */
    struct load *ld = load_of(user);
    if (!ld || !err || err->level < XML_ERR_ERROR)
        return;
    /* Once we stopped the parser ourselves, what follows is a consequence, not news. */
    if (ld->stopped)
        return;
    char msg[512];
    cf_strlcpy(msg, err->message ? err->message : "unknown error", sizeof(msg));
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    /* Encoding errors come once per conversion attempt; one copy is enough. */
    const struct cf_diags *d = ld->diags;
    if (d->count > ld->base) {
        const struct cf_diag *last = &d->items[d->count - 1];
        if (last->line == (err->line > 0 ? err->line : 0) &&
            strncmp(last->message, "malformed XML: ", 15) == 0 &&
            strcmp(last->message + 15, msg) == 0)
            return;
    }
    report(ld, err->line, NULL, "malformed XML: %s", msg);
}

static const char *compression_name(const uint8_t *p, size_t len)
{
    static const struct {
        const char *name;
        const char *magic;
        size_t len;
    } magics[] = {
        {"gzip", "\x1f\x8b", 2},  {"xz", "\xfd\x37\x7a\x58\x5a\x00", 6},
        {"bzip2", "BZh", 3},      {"zstd", "\x28\xb5\x2f\xfd", 4},
        {"zip", "PK\x03\x04", 4},
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(magics); i++) {
        if (len >= magics[i].len && memcmp(p, magics[i].magic, magics[i].len) == 0)
            return magics[i].name;
    }
    return NULL;
}

static bool starts_with(const uint8_t *p, const uint8_t *end, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(end - p) >= n && memcmp(p, s, n) == 0;
}

/* libxml2 2.9 checks each attribute of a start tag against all earlier ones, so one element
 * with 300,000 attributes (a 4 MiB file) costs minutes of CPU before any callback of ours runs.
 * This linear scan counts the '=' signs of each tag outside quoted values, which is the number
 * of attributes and namespace declarations in well-formed XML; it leaves everything else,
 * including deciding what is well-formed, to libxml2. Returns the line of the first tag with too
 * many, or 0. */
static int find_attribute_flood(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    int line = 1;
    while (p < end) {
        if (*p == '\n')
            line++;
        if (*p != '<') {
            p++;
            continue;
        }
        /* Skip markup that holds no attributes but may hold '=' or '>'. */
        const char *close = NULL;
        if (starts_with(p, end, "<!--"))
            close = "-->";
        else if (starts_with(p, end, "<![CDATA["))
            close = "]]>";
        else if (starts_with(p, end, "<?"))
            close = "?>";
        if (close) {
            size_t n = strlen(close);
            for (p++; p < end && !starts_with(p, end, close); p++)
                line += *p == '\n';
            p += n;
            continue;
        }
        int tag_line = line;
        unsigned attrs = 0;
        uint8_t quote = 0;
        for (p++; p < end; p++) {
            if (*p == '\n')
                line++;
            if (quote) {
                if (*p == quote)
                    quote = 0;
            } else if (*p == '"' || *p == '\'') {
                quote = *p;
            } else if (*p == '=') {
                if (++attrs > MAX_ATTRS_PER_ELEMENT)
                    return tag_line;
            } else if (*p == '>') {
                p++;
                break;
            }
        }
    }
    return 0;
}

/* Parses the bytes into a tree, or returns NULL with the reasons reported. */
static xmlDocPtr parse_xml(struct load *ld, const uint8_t *bytes, size_t len)
{
    if (len == 0) {
        report(ld, 0, NULL, "the file is empty");
        return NULL;
    }
    if (len > CF_BPMN_MAX_BYTES) {
        report(ld, 0, NULL, "the file is %zu bytes, more than the limit of %u bytes", len,
               CF_BPMN_MAX_BYTES);
        return NULL;
    }
    /* libxml2 would not decompress from memory anyway, but saying what the bytes are is more
     * useful than "Start tag expected". */
    const char *packed = compression_name(bytes, len);
    if (packed) {
        report(ld, 0, NULL,
               "the file is %s-compressed data, not XML; compressed BPMN files are not accepted",
               packed);
        return NULL;
    }
    int flood = find_attribute_flood(bytes, len);
    if (flood) {
        report(ld, flood, NULL, "an element has more than %d attributes", MAX_ATTRS_PER_ELEMENT);
        return NULL;
    }

    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        cf_log(CF_LOG_ERROR, "out of memory creating an XML parser; exiting");
        abort();
    }
    /* ctxt->sax is this context's own copy of the SAX2 handler, so overriding it here changes
     * nothing for any other parse. */
    ctxt->_private = ld;
    ctxt->sax->internalSubset = on_internal_subset;
    ld->sax_start = ctxt->sax->startElementNs;
    ld->sax_end = ctxt->sax->endElementNs;
    ctxt->sax->startElementNs = on_start_element;
    ctxt->sax->endElementNs = on_end_element;
    ctxt->sax->serror = on_xml_error;

    /* XML_PARSE_BIG_LINES changes nothing but line numbering: it keeps lines past 65535 right. */
    int options = XML_PARSE_NONET | XML_PARSE_BIG_LINES;
#if LIBXML_VERSION >= 21300
    options |= XML_PARSE_NO_XXE;
#endif
    /* libxml2 raises a few errors (character encoding conversion, I/O) without the parser
     * context, so the handler above never sees them and libxml2 would print them on stderr.
     * Its fallback structured handler is per thread; it is set only around this parse, which
     * runs on this thread from start to end, and then restored. */
    xmlStructuredErrorFunc prev_handler = xmlStructuredError;
    void *prev_handler_ctx = xmlStructuredErrorContext;
    xmlSetStructuredErrorFunc(ctxt, on_xml_error);
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, (const char *)bytes, (int)len, NULL, NULL, options);
    xmlSetStructuredErrorFunc(prev_handler_ctx, prev_handler);
    if (doc && !failed(ld) && xmlGetIntSubset(doc) != NULL) {
        report(ld, 0, NULL, "DOCTYPE is not allowed");
    }
    if (!doc && !failed(ld))
        report(ld, 0, NULL, "malformed XML: the document could not be parsed");
    xmlFreeParserCtxt(ctxt);
    if (failed(ld)) {
        xmlFreeDoc(doc);
        return NULL;
    }
    return doc;
}

/* ---- tree helpers ---- */

static bool ns_is(const xmlNs *ns, const char *href)
{
    return ns && ns->href && strcmp((const char *)ns->href, href) == 0;
}

static bool ns_is_camunda(const xmlNs *ns)
{
    return ns_is(ns, CF_NS_CAMUNDA) || ns_is(ns, CF_NS_ACTIVITI);
}

static bool is_bpmn(const xmlNode *n)
{
    return n->type == XML_ELEMENT_NODE && ns_is(n->ns, CF_NS_BPMN);
}

static bool is_camunda(const xmlNode *n)
{
    return n->type == XML_ELEMENT_NODE && ns_is_camunda(n->ns);
}

static bool named(const xmlNode *n, const char *name)
{
    return strcmp((const char *)n->name, name) == 0;
}

static int line_of(const xmlNode *n)
{
    long l = xmlGetLineNo(n);
    return l > 0 && l <= INT_MAX ? (int)l : 0;
}

enum attr_ns { A_PLAIN, A_CAMUNDA };

static xmlAttr *find_attr(const xmlNode *n, enum attr_ns ns, const char *name)
{
    for (xmlAttr *at = n->properties; at; at = at->next) {
        if (strcmp((const char *)at->name, name) != 0)
            continue;
        if (ns == A_PLAIN ? at->ns == NULL : ns_is_camunda(at->ns))
            return at;
    }
    return NULL;
}

static const char *attr_value(struct cf__arena *a, const xmlAttr *at)
{
    xmlChar *v = xmlNodeListGetString(at->doc, at->children, 1);
    char *s = cf__arena_strdup(a, v ? (const char *)v : "");
    xmlFree(v);
    return s;
}

/* The attribute's value copied into `a`, or NULL when absent. */
static const char *attr(struct cf__arena *a, const xmlNode *n, enum attr_ns ns, const char *name)
{
    const xmlAttr *at = find_attr(n, ns, name);
    return at ? attr_value(a, at) : NULL;
}

static bool is_xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The text content of `n` copied into `a`, with surrounding white space removed when `trim`. */
static const char *text_of(struct cf__arena *a, const xmlNode *n, bool trim)
{
    xmlChar *v = xmlNodeGetContent(n);
    const char *s = v ? (const char *)v : "";
    size_t len = strlen(s);
    if (trim) {
        while (len > 0 && is_xml_space(*s)) {
            s++;
            len--;
        }
        while (len > 0 && is_xml_space(s[len - 1]))
            len--;
    }
    char *out = cf__arena_alloc(a, len + 1);
    memcpy(out, s, len);
    xmlFree(v);
    return out;
}

/* ---- building one process ---- */

/* What the loader needs to remember about an element until the graph is complete. */
struct pend {
    const char *default_ref;
    const char *attached_ref;
    bool refused; /* already refused by name: spare the user follow-up complaints */
    size_t cap_inputs, cap_outputs, cap_fields, cap_in, cap_out;
};

struct pflow {
    struct cf_flow *flow;
    const char *source_ref;
    const char *target_ref;
    struct cf_elem *scope; /* where the flow is declared; NULL = process level */
};

struct build {
    struct load *ld;
    struct cf__arena *a;   /* the model's arena */
    struct cf__arena *tmp; /* freed when the process is built */
    struct cf_model *m;
    struct cf_elem **elems;
    struct pend **pends; /* parallel to elems */
    size_t n_elems, cap_elems;
    struct pflow *flows;
    size_t n_flows, cap_flows;
    struct cf__strmap flow_ids; /* id -> struct cf_flow */
    /* Ids of elements refused by name: references to them are not reported again. */
    struct cf__strmap refused_ids;
};

static void *grow(struct cf__arena *a, void *items, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return items;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *p = cf__arena_calloc(a, ncap, size);
    if (n)
        memcpy(p, items, n * size);
    *cap = ncap;
    return p;
}

static struct pend *pend_of(struct build *b, const struct cf_elem *e)
{
    return b->pends[e->index];
}

/* Records `id` as used; reports it when another element already uses it. */
static void claim_id(struct load *ld, const char *id, xmlNode *n)
{
    xmlNode *first = cf__strmap_put(&ld->ids, id, n);
    if (first)
        report(ld, line_of(n), id, "duplicate id '%s' (first used on line %d)", id, line_of(first));
}

static struct cf_expr *compile(struct build *b, const char *text, int line, const char *id,
                               const char *what)
{
    char err[512] = "";
    struct cf_expr *x = NULL;
    if (cf_expr_compile(text, &x, err, sizeof(err)) != 0) {
        if (x)
            cf_expr_free(x);
        if (strstr(err, text))
            report(b->ld, line, id, "invalid %s: %s", what, err);
        else
            report(b->ld, line, id, "invalid %s '%.200s': %s", what, text, err);
        return NULL;
    }
    cf__arena_own_expr(b->a, x);
    return x;
}

/* Reads a boolean attribute (xsd:boolean). Camunda silently takes anything but "true" as false;
 * a typo in camunda:asyncBefore changes behaviour, so it is reported instead. */
static bool bool_attr(struct build *b, const xmlNode *n, enum attr_ns ns, const char *name,
                      bool dflt, const char *id)
{
    const char *v = attr(b->tmp, n, ns, name);
    if (!v)
        return dflt;
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
        return true;
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
        return false;
    report(b->ld, line_of(n), id, "%s%s=\"%s\" is not a boolean (true or false)",
           ns == A_CAMUNDA ? "camunda:" : "", name, v);
    return dflt;
}

static void refuse(struct build *b, struct cf_elem *e, const xmlNode *n, const char *id,
                   const char *fmt, ...) CF_PRINTF(5, 6);
static void refuse(struct build *b, struct cf_elem *e, const xmlNode *n, const char *id,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(b->ld, line_of(n), id, fmt, ap);
    va_end(ap);
    if (e)
        pend_of(b, e)->refused = true;
}

/* ---- extension elements (camunda:*) ---- */

/* "${'<text>'}" with backslashes and single quotes escaped, allocated in `a`. */
static const char *quote_literal(struct cf__arena *a, const char *text)
{
    struct cf_buf q;
    cf_buf_init(&q);
    cf_buf_puts(&q, "${'");
    for (const char *c = text; *c; c++) {
        if (*c == '\\' || *c == '\'')
            cf_buf_putc(&q, '\\');
        cf_buf_putc(&q, *c);
    }
    cf_buf_puts(&q, "'}");
    const char *out = cf__arena_strdup(a, q.data);
    cf_buf_free(&q);
    return out;
}

static void parse_mapping(struct build *b, struct cf_elem *e, const xmlNode *n, const char *kind,
                          struct cf_mapping **items, size_t *count, size_t *cap)
{
    const char *name = attr(b->a, n, A_PLAIN, "name");
    if (!name || !*name) {
        report(b->ld, line_of(n), e->id, "camunda:%s has no name", kind);
        return;
    }
    struct cf_mapping mp = {.name = name, .value = NULL, .line = line_of(n)};
    char what[300];
    snprintf(what, sizeof(what), "expression in camunda:%s '%.200s'", kind, name);

    if (strcmp(kind, "field") == 0) {
        /* A field holds exactly one of stringValue, expression, <camunda:string> or
         * <camunda:expression>. Every value becomes a template; text without ${...} is a
         * literal, which is what Camunda's FixedValue gives for string values. */
        const char *text = NULL;
        bool literal = false;
        int sources = 0;
        const char *sv = attr(b->a, n, A_PLAIN, "stringValue");
        const char *ev = attr(b->a, n, A_PLAIN, "expression");
        if (sv) {
            text = sv;
            literal = true;
            sources++;
        }
        if (ev) {
            text = ev;
            sources++;
        }
        for (const xmlNode *c = n->children; c; c = c->next) {
            if (!is_camunda(c))
                continue;
            if (named(c, "string")) {
                text = text_of(b->a, c, false);
                literal = true;
                sources++;
            } else if (named(c, "expression")) {
                text = text_of(b->a, c, true);
                sources++;
            }
        }
        if (sources == 0) {
            report(b->ld, mp.line, e->id,
                   "camunda:field '%s' needs a stringValue or expression attribute, or a "
                   "camunda:string or camunda:expression element",
                   name);
            return;
        }
        if (sources > 1) {
            report(b->ld, mp.line, e->id, "camunda:field '%s' has more than one value", name);
            return;
        }
        /* Camunda passes a string value through untouched (FixedValue), even one that contains
         * ${...}; as a template that text would be evaluated. Such a value becomes a JUEL string
         * literal, which evaluates to exactly the text. */
        if (literal && (strstr(text, "${") || strstr(text, "#{")))
            text = quote_literal(b->a, text);
        mp.value = compile(b, text, mp.line, e->id, what);
    } else {
        for (const xmlNode *c = n->children; c; c = c->next) {
            if (!is_camunda(c))
                continue;
            if (named(c, "script")) {
                refuse(b, e, c, e->id,
                       "camunda:script in camunda:%s '%s' is not supported: certflow runs no "
                       "scripts",
                       kind, name);
                return;
            }
            refuse(b, e, c, e->id,
                   "camunda:%s in camunda:%s '%s' is not supported: write the value as a "
                   "${...} expression",
                   (const char *)c->name, kind, name);
            return;
        }
        /* As in Camunda, a parameter without text is null rather than the empty string. */
        const char *text = text_of(b->a, n, true);
        if (*text)
            mp.value = compile(b, text, mp.line, e->id, what);
    }
    *items = grow(b->a, *items, *count, cap, sizeof(**items));
    (*items)[(*count)++] = mp;
}

static void parse_var_mapping(struct build *b, struct cf_elem *e, const xmlNode *n, bool in)
{
    struct pend *p = pend_of(b, e);
    const char *kind = in ? "in" : "out";
    int line = line_of(n);
    struct cf_var_mapping vm = {0};
    const char *variables = attr(b->tmp, n, A_PLAIN, "variables");
    const char *business_key = in ? attr(b->a, n, A_PLAIN, "businessKey") : NULL;
    const char *source = attr(b->a, n, A_PLAIN, "source");
    const char *source_expr = attr(b->a, n, A_PLAIN, "sourceExpression");
    vm.target = attr(b->a, n, A_PLAIN, "target");
    vm.local = bool_attr(b, n, A_PLAIN, "local", false, e->id);

    if (business_key) {
        vm.business_key = true;
        vm.source_expr = compile(b, business_key, line, e->id, "camunda:in businessKey");
    } else if (variables) {
        if (strcmp(variables, "all") != 0) {
            report(b->ld, line, e->id, "camunda:%s variables=\"%s\" is not valid; use \"all\"",
                   kind, variables);
            return;
        }
        vm.all = true;
    } else {
        if (!source && !source_expr) {
            report(b->ld, line, e->id,
                   "camunda:%s needs a source, sourceExpression, variables=\"all\"%s", kind,
                   in ? " or businessKey" : "");
            return;
        }
        if (source && source_expr) {
            report(b->ld, line, e->id, "camunda:%s has both source and sourceExpression", kind);
            return;
        }
        if (!vm.target || !*vm.target) {
            report(b->ld, line, e->id, "camunda:%s needs a target", kind);
            return;
        }
        vm.source = source;
        if (source_expr) {
            char what[64];
            snprintf(what, sizeof(what), "camunda:%s sourceExpression", kind);
            vm.source_expr = compile(b, source_expr, line, e->id, what);
        }
    }
    if (in) {
        e->call_in = grow(b->a, e->call_in, e->n_call_in, &p->cap_in, sizeof(vm));
        e->call_in[e->n_call_in++] = vm;
    } else {
        e->call_out = grow(b->a, e->call_out, e->n_call_out, &p->cap_out, sizeof(vm));
        e->call_out[e->n_call_out++] = vm;
    }
}

/* Reads <extensionElements>. `e` is NULL at process level, where only refusals matter. */
static void parse_extensions(struct build *b, struct cf_elem *e, const char *owner_id,
                             const xmlNode *ext)
{
    for (const xmlNode *c = ext->children; c; c = c->next) {
        /* Extensions of other tools (other namespaces) and Camunda extensions that do not change
         * execution (camunda:properties, camunda:potentialStarter, ...) are ignored. */
        if (!is_camunda(c))
            continue;
        if (named(c, "executionListener") || named(c, "taskListener")) {
            refuse(b, e, c, owner_id,
                   "camunda:%s is not supported: listeners would run code outside the process "
                   "model; use a service task",
                   (const char *)c->name);
        } else if (named(c, "script")) {
            refuse(b, e, c, owner_id, "camunda:script is not supported: certflow runs no scripts");
        } else if (named(c, "connector")) {
            refuse(b, e, c, owner_id,
                   "camunda:connector is not supported: name a task plug-in with "
                   "camunda:delegateExpression=\"${taskName}\"");
        } else if (named(c, "errorEventDefinition")) {
            refuse(b, e, c, owner_id,
                   "camunda:errorEventDefinition is not supported: it belongs to external "
                   "tasks, which certflow does not run");
        } else if (!e) {
            continue;
        } else if (named(c, "inputOutput")) {
            struct pend *p = pend_of(b, e);
            for (const xmlNode *io = c->children; io; io = io->next) {
                if (!is_camunda(io))
                    continue;
                if (named(io, "inputParameter"))
                    parse_mapping(b, e, io, "inputParameter", &e->inputs, &e->n_inputs,
                                  &p->cap_inputs);
                else if (named(io, "outputParameter"))
                    parse_mapping(b, e, io, "outputParameter", &e->outputs, &e->n_outputs,
                                  &p->cap_outputs);
            }
        } else if (named(c, "field")) {
            struct pend *p = pend_of(b, e);
            parse_mapping(b, e, c, "field", &e->fields, &e->n_fields, &p->cap_fields);
        } else if (named(c, "in") || named(c, "out")) {
            /* Camunda reads variable mappings only on call activities. */
            if (e->type == CF_EL_CALL_ACTIVITY)
                parse_var_mapping(b, e, c, named(c, "in"));
        } else if (named(c, "failedJobRetryTimeCycle")) {
            const char *t = text_of(b->a, c, true);
            e->retry_cycle = *t ? t : NULL;
        }
    }
}

/* ---- event definitions ---- */

static void resolve_error(struct build *b, struct cf_elem *e, const xmlNode *d)
{
    struct load *ld = b->ld;
    const char *ref = attr(b->a, d, A_PLAIN, "errorRef");
    e->error_ref = ref;
    e->error_code_variable = attr(b->a, d, A_CAMUNDA, "errorCodeVariable");
    e->error_message_variable = attr(b->a, d, A_CAMUNDA, "errorMessageVariable");
    const struct def_error *def = ref ? cf__strmap_get(&ld->errors, ref) : NULL;

    if (e->type == CF_EL_END_EVENT) {
        /* §5: errorRef is mandatory; a resolved <error> must carry a code; an unresolved
         * reference is thrown as the code itself. */
        if (!ref || !*ref) {
            report(ld, line_of(d), e->id,
                   "an error end event needs an errorRef naming the error it throws");
            return;
        }
        if (def) {
            if (!def->code || !*def->code) {
                report(ld, line_of(d), e->id,
                       "error '%s' has no errorCode; an error end event must throw a code", ref);
                return;
            }
            e->error_code = cf__arena_strdup(b->a, def->code);
            e->error_message = def->message ? cf__arena_strdup(b->a, def->message) : NULL;
        } else {
            e->error_code = ref;
        }
        return;
    }
    /* §2 for catching events: no errorRef, or an <error> without errorCode, catches every
     * error (NULL); an unresolved reference is compared as the code itself. */
    if (!ref)
        e->error_code = NULL;
    else if (def)
        e->error_code = def->code ? cf__arena_strdup(b->a, def->code) : NULL;
    else
        e->error_code = ref;
}

static void resolve_message(struct build *b, struct cf_elem *e, const xmlNode *n)
{
    struct load *ld = b->ld;
    const char *ref = attr(b->tmp, n, A_PLAIN, "messageRef");
    if (!ref || !*ref) {
        report(ld, line_of(n), e->id, "%s needs a messageRef naming a <message>",
               e->type == CF_EL_RECEIVE_TASK ? "a receive task" : "a message event");
        return;
    }
    const struct def_message *def = cf__strmap_get(&ld->messages, ref);
    if (!def) {
        report(ld, line_of(n), e->id, "messageRef '%s' names no <message> of this file", ref);
        return;
    }
    if (!def->name || !*def->name) {
        report(ld, line_of(n), e->id, "message '%s' has no name to correlate on", ref);
        return;
    }
    e->message_name = cf__arena_strdup(b->a, def->name);
}

static void parse_timer(struct build *b, struct cf_elem *e, const xmlNode *d)
{
    static const struct {
        const char *tag;
        enum cf_timer_kind kind;
    } kinds[] = {{"timeDate", CF_TIMER_DATE},
                 {"timeDuration", CF_TIMER_DURATION},
                 {"timeCycle", CF_TIMER_CYCLE}};
    for (const xmlNode *c = d->children; c; c = c->next) {
        if (!is_bpmn(c))
            continue;
        for (size_t i = 0; i < CF_ARRAY_LEN(kinds); i++) {
            if (!named(c, kinds[i].tag))
                continue;
            if (e->timer != CF_TIMER_NONE) {
                report(b->ld, line_of(c), e->id,
                       "a timer has exactly one of timeDate, timeDuration and timeCycle");
                return;
            }
            e->timer = kinds[i].kind;
            const char *text = text_of(b->tmp, c, true);
            if (!*text) {
                report(b->ld, line_of(c), e->id, "%s is empty", kinds[i].tag);
                return;
            }
            e->timer_expr = compile(b, text, line_of(c), e->id, kinds[i].tag);
        }
    }
    if (e->timer == CF_TIMER_NONE)
        report(b->ld, line_of(d), e->id,
               "timerEventDefinition needs a timeDate, timeDuration or timeCycle");
}

static const char *event_kind_name(enum cf_event_kind k)
{
    switch (k) {
    case CF_EV_ERROR:
        return "error";
    case CF_EV_TERMINATE:
        return "terminate";
    case CF_EV_TIMER:
        return "timer";
    case CF_EV_MESSAGE:
        return "message";
    default:
        return "none";
    }
}

/* Reads the event definitions of an event; returns false when one was refused. */
static bool parse_event_defs(struct build *b, struct cf_elem *e, const xmlNode *n)
{
    static const struct {
        const char *tag;
        const char *why;
    } refused[] = {
        {"signalEventDefinition", "certflow has no signals; use a message event"},
        {"escalationEventDefinition", "use an error event"},
        {"compensateEventDefinition", "certflow does not compensate"},
        {"conditionalEventDefinition", "certflow evaluates no conditions outside gateways"},
        {"linkEventDefinition", "draw the sequence flow instead"},
        {"cancelEventDefinition", "certflow has no transactions"},
        {"eventDefinitionRef", "write the event definition inside the event"},
    };
    const xmlNode *def = NULL;
    int n_defs = 0;
    for (const xmlNode *c = n->children; c; c = c->next) {
        if (!is_bpmn(c))
            continue;
        const char *name = (const char *)c->name;
        size_t len = strlen(name);
        bool is_def = (len > 15 && strcmp(name + len - 15, "EventDefinition") == 0) ||
                      named(c, "eventDefinitionRef");
        if (!is_def)
            continue;
        for (size_t i = 0; i < CF_ARRAY_LEN(refused); i++) {
            if (named(c, refused[i].tag)) {
                refuse(b, e, c, e->id, "%s is not supported: %s", name, refused[i].why);
                return false;
            }
        }
        def = c;
        n_defs++;
    }
    if (n_defs > 1) {
        refuse(b, e, n, e->id,
               "an event with more than one event definition (a multiple event) is not "
               "supported");
        return false;
    }
    if (!def)
        return true;
    if (named(def, "errorEventDefinition")) {
        e->event = CF_EV_ERROR;
        /* Resolution depends on where the event is; it is done once the type is checked. */
    } else if (named(def, "terminateEventDefinition")) {
        e->event = CF_EV_TERMINATE;
    } else if (named(def, "timerEventDefinition")) {
        e->event = CF_EV_TIMER;
    } else if (named(def, "messageEventDefinition")) {
        e->event = CF_EV_MESSAGE;
    } else {
        refuse(b, e, def, e->id, "%s is not supported", (const char *)def->name);
        return false;
    }

    /* Which definitions each kind of event may carry. */
    const char *kind = event_kind_name(e->event);
    bool timer_or_message = e->event == CF_EV_TIMER || e->event == CF_EV_MESSAGE;
    bool ok = true;
    switch (e->type) {
    case CF_EL_START_EVENT:
        if (e->event == CF_EV_TERMINATE) {
            refuse(b, e, def, e->id, "a start event cannot have a terminateEventDefinition");
            ok = false;
        }
        break;
    case CF_EL_END_EVENT:
        if (timer_or_message) {
            refuse(b, e, def, e->id,
                   "a %s end event is not supported: an end event is none, error or terminate",
                   kind);
            ok = false;
        }
        break;
    case CF_EL_INTERMEDIATE_CATCH:
        if (!timer_or_message) {
            refuse(b, e, def, e->id,
                   "a %s intermediate catch event is not supported: use a timer or a message",
                   kind);
            ok = false;
        }
        break;
    case CF_EL_INTERMEDIATE_THROW:
        refuse(b, e, def, e->id,
               "a %s intermediate throw event is not supported: only the none intermediate "
               "throw event is",
               kind);
        ok = false;
        break;
    case CF_EL_BOUNDARY_EVENT:
        if (e->event == CF_EV_TERMINATE) {
            refuse(b, e, def, e->id, "a boundary event cannot have a terminateEventDefinition");
            ok = false;
        }
        break;
    default:
        break;
    }
    if (!ok) {
        e->event = CF_EV_NONE;
        return false;
    }

    if (e->event == CF_EV_ERROR)
        resolve_error(b, e, def);
    else if (e->event == CF_EV_TIMER)
        parse_timer(b, e, def);
    else if (e->event == CF_EV_MESSAGE)
        resolve_message(b, e, def);
    return true;
}

/* ---- flow nodes ---- */

static const struct {
    const char *tag;
    enum cf_elem_type type;
} node_tags[] = {
    {"startEvent", CF_EL_START_EVENT},
    {"endEvent", CF_EL_END_EVENT},
    {"intermediateCatchEvent", CF_EL_INTERMEDIATE_CATCH},
    {"intermediateThrowEvent", CF_EL_INTERMEDIATE_THROW},
    {"boundaryEvent", CF_EL_BOUNDARY_EVENT},
    {"task", CF_EL_TASK},
    {"manualTask", CF_EL_TASK},
    {"serviceTask", CF_EL_SERVICE_TASK},
    {"sendTask", CF_EL_SERVICE_TASK},
    {"businessRuleTask", CF_EL_SERVICE_TASK},
    {"receiveTask", CF_EL_RECEIVE_TASK},
    {"exclusiveGateway", CF_EL_EXCLUSIVE_GATEWAY},
    {"parallelGateway", CF_EL_PARALLEL_GATEWAY},
    {"inclusiveGateway", CF_EL_INCLUSIVE_GATEWAY},
    {"subProcess", CF_EL_SUBPROCESS},
    {"callActivity", CF_EL_CALL_ACTIVITY},
};

/* BPMN flow elements certflow knows and refuses, with the reason users need. */
static const struct {
    const char *tag;
    const char *why;
} refused_tags[] = {
    {"scriptTask", "certflow runs no scripts; move the logic into a task plug-in"},
    {"userTask", "certflow has no task list for people; use a receive task or a message event"},
    {"eventBasedGateway", "wait with a receive task, or a message or timer boundary event"},
    {"complexGateway", "use an exclusive, parallel or inclusive gateway"},
    {"transaction", "certflow has no transactions or compensation; use a subprocess"},
    {"adHocSubProcess", "its activities would run in no defined order"},
    {"callChoreography", "choreographies are not executable"},
    {"choreographyTask", "choreographies are not executable"},
    {"subChoreography", "choreographies are not executable"},
    {"implicitThrowEvent", "use an intermediate throw event"},
};

/* Children of a process or subprocess that carry no execution semantics in certflow. */
static const char *const ignored_tags[] = {"documentation",
                                           "extensionElements",
                                           "laneSet",
                                           "textAnnotation",
                                           "association",
                                           "group",
                                           "dataObject",
                                           "dataObjectReference",
                                           "dataStoreReference",
                                           "ioSpecification",
                                           "property",
                                           "auditing",
                                           "monitoring",
                                           "incoming",
                                           "outgoing",
                                           "dataInputAssociation",
                                           "dataOutputAssociation",
                                           "multiInstanceLoopCharacteristics",
                                           "standardLoopCharacteristics",
                                           "ioBinding",
                                           "correlationSubscription",
                                           "resourceRole",
                                           "performer",
                                           "humanPerformer",
                                           "potentialOwner"};

static void parse_scope(struct build *b, const xmlNode *scope_node, struct cf_elem *parent);

static struct cf_elem *new_elem(struct build *b, xmlNode *n, enum cf_elem_type t,
                                struct cf_elem *parent)
{
    const char *id = attr(b->a, n, A_PLAIN, "id");
    if (!id || !*id) {
        report(b->ld, line_of(n), NULL, "<%s> has no id", (const char *)n->name);
        return NULL;
    }
    claim_id(b->ld, id, n);
    struct cf_elem *e = cf__arena_alloc(b->a, sizeof(*e));
    e->type = t;
    e->id = id;
    e->name = attr(b->a, n, A_PLAIN, "name");
    e->tag = cf__arena_strdup(b->a, (const char *)n->name);
    e->line = line_of(n);
    e->parent = parent;
    e->exclusive = true;
    e->cancel_activity = true;

    /* Both arrays grow in step; the second call updates the shared capacity. */
    size_t cap = b->cap_elems;
    b->elems = grow(b->tmp, b->elems, b->n_elems, &cap, sizeof(*b->elems));
    b->pends = grow(b->tmp, b->pends, b->n_elems, &b->cap_elems, sizeof(*b->pends));
    e->index = b->n_elems;
    b->elems[b->n_elems] = e;
    b->pends[b->n_elems] = cf__arena_alloc(b->tmp, sizeof(struct pend));
    b->n_elems++;
    /* The first element with an id wins the index; a duplicate was reported above. */
    cf__strmap_put(cf__arena_index(b->a), e->id, e);
    return e;
}

/* Camunda attributes every flow node may carry. */
static void parse_common_attrs(struct build *b, struct cf_elem *e, const xmlNode *n)
{
    for (const xmlAttr *at = n->properties; at; at = at->next) {
        if (!ns_is_camunda(at->ns))
            continue;
        const char *name = (const char *)at->name;
        if (strcmp(name, "class") == 0) {
            refuse(b, e, n, e->id,
                   "camunda:class is not supported: certflow loads no Java classes; name a task "
                   "plug-in with camunda:delegateExpression=\"${taskName}\"");
        } else if (strcmp(name, "type") == 0) {
            refuse(b, e, n, e->id,
                   "camunda:type=\"%s\" (external task) is not supported: name a task plug-in "
                   "with camunda:delegateExpression=\"${taskName}\"",
                   attr_value(b->tmp, at));
        } else if (strcmp(name, "decisionRef") == 0) {
            refuse(b, e, n, e->id,
                   "camunda:decisionRef is not supported: certflow evaluates no DMN decisions");
        } else if (strcmp(name, "caseRef") == 0) {
            refuse(b, e, n, e->id, "camunda:caseRef is not supported: certflow runs no CMMN cases");
        } else if (strcmp(name, "variableMappingClass") == 0 ||
                   strcmp(name, "variableMappingDelegateExpression") == 0) {
            refuse(b, e, n, e->id,
                   "camunda:%s is not supported: it would run code; use camunda:in and "
                   "camunda:out",
                   name);
        }
    }
    /* camunda:async is the name Camunda used before asyncBefore existed. */
    bool async_old = bool_attr(b, n, A_CAMUNDA, "async", false, e->id);
    e->async_before = bool_attr(b, n, A_CAMUNDA, "asyncBefore", false, e->id) || async_old;
    e->async_after = bool_attr(b, n, A_CAMUNDA, "asyncAfter", false, e->id);
    e->exclusive = bool_attr(b, n, A_CAMUNDA, "exclusive", true, e->id);
}

static void parse_delegate(struct build *b, struct cf_elem *e, const xmlNode *n)
{
    const char *de = attr(b->tmp, n, A_CAMUNDA, "delegateExpression");
    const char *ex = attr(b->tmp, n, A_CAMUNDA, "expression");
    if (de && ex) {
        report(b->ld, e->line, e->id,
               "the %s has both camunda:delegateExpression and camunda:expression; keep one",
               e->tag);
        return;
    }
    if (!de && !ex) {
        if (!pend_of(b, e)->refused)
            refuse(b, e, n, e->id,
                   "%s without camunda:delegateExpression is not supported: name a task "
                   "plug-in with camunda:delegateExpression=\"${taskName}\"",
                   e->tag);
        return;
    }
    const char *attr_name = de ? "camunda:delegateExpression" : "camunda:expression";
    const char *text = de ? de : ex;
    char err[512] = "";
    struct cf_expr *x = NULL;
    if (cf_expr_compile(text, &x, err, sizeof(err)) != 0) {
        if (x)
            cf_expr_free(x);
        report(b->ld, e->line, e->id, "invalid %s '%.200s': %s", attr_name, text, err);
        return;
    }
    const char *name = cf_expr_single_identifier(x);
    if (!name) {
        report(b->ld, e->line, e->id,
               "%s=\"%.200s\" must name a task plug-in as ${name}; certflow calls no methods "
               "and evaluates no other expressions here",
               attr_name, text);
    } else {
        e->delegate = cf__arena_strdup(b->a, name);
        e->delegate_is_expression = ex != NULL;
    }
    cf_expr_free(x);
}

static void parse_call_activity(struct build *b, struct cf_elem *e, const xmlNode *n)
{
    e->called_element = attr(b->a, n, A_PLAIN, "calledElement");
    /* A refused camunda:caseRef already told the user what this call activity lacks. */
    if ((!e->called_element || !*e->called_element) && !pend_of(b, e)->refused)
        report(b->ld, e->line, e->id, "a call activity needs a calledElement");
    const char *binding = attr(b->a, n, A_CAMUNDA, "calledElementBinding");
    e->called_version = attr(b->a, n, A_CAMUNDA, "calledElementVersion");
    if (!binding || strcmp(binding, "latest") == 0) {
        e->called_binding = "latest";
    } else if (strcmp(binding, "deployment") == 0) {
        e->called_binding = binding;
    } else if (strcmp(binding, "version") == 0) {
        e->called_binding = binding;
        int64_t version = 0;
        if (!e->called_version || !*e->called_version)
            report(b->ld, e->line, e->id,
                   "camunda:calledElementBinding=\"version\" needs camunda:calledElementVersion");
        else if (cf_parse_i64(e->called_version, &version) != 0 || version < 1)
            report(b->ld, e->line, e->id,
                   "camunda:calledElementVersion=\"%s\" is not a version number (1, 2, ...)",
                   e->called_version);
    } else {
        report(b->ld, e->line, e->id,
               "camunda:calledElementBinding=\"%s\" is not supported; use latest, deployment or "
               "version",
               binding);
    }
}

static void parse_node(struct build *b, xmlNode *n, enum cf_elem_type t, struct cf_elem *parent)
{
    struct cf_elem *e = new_elem(b, n, t, parent);
    if (!e)
        return;
    parse_common_attrs(b, e, n);

    switch (t) {
    case CF_EL_BOUNDARY_EVENT:
        pend_of(b, e)->attached_ref = attr(b->tmp, n, A_PLAIN, "attachedToRef");
        e->cancel_activity = bool_attr(b, n, A_PLAIN, "cancelActivity", true, e->id);
        break;
    case CF_EL_START_EVENT:
        e->cancel_activity = bool_attr(b, n, A_PLAIN, "isInterrupting", true, e->id);
        break;
    case CF_EL_SUBPROCESS:
        e->triggered_by_event = bool_attr(b, n, A_PLAIN, "triggeredByEvent", false, e->id);
        pend_of(b, e)->default_ref = attr(b->tmp, n, A_PLAIN, "default");
        break;
    case CF_EL_PARALLEL_GATEWAY:
        if (find_attr(n, A_PLAIN, "default"))
            report(b->ld, e->line, e->id, "a parallel gateway has no default flow");
        break;
    default:
        if (cf_elem_is_activity(e) || t == CF_EL_EXCLUSIVE_GATEWAY || t == CF_EL_INCLUSIVE_GATEWAY)
            pend_of(b, e)->default_ref = attr(b->tmp, n, A_PLAIN, "default");
        break;
    }

    for (xmlNode *c = n->children; c; c = c->next) {
        if (!is_bpmn(c))
            continue;
        if (named(c, "extensionElements")) {
            parse_extensions(b, e, e->id, c);
        } else if (named(c, "multiInstanceLoopCharacteristics")) {
            refuse(b, e, c, e->id,
                   "multiInstanceLoopCharacteristics (multi-instance) is not supported: "
                   "start one process per item instead");
        } else if (named(c, "standardLoopCharacteristics")) {
            refuse(b, e, c, e->id,
                   "standardLoopCharacteristics (loop) is not supported: model the loop with "
                   "a gateway and a sequence flow back");
        }
    }

    bool events_ok = true;
    switch (t) {
    case CF_EL_START_EVENT:
    case CF_EL_END_EVENT:
    case CF_EL_INTERMEDIATE_CATCH:
    case CF_EL_INTERMEDIATE_THROW:
    case CF_EL_BOUNDARY_EVENT:
        events_ok = parse_event_defs(b, e, n);
        break;
    default:
        break;
    }

    switch (t) {
    case CF_EL_INTERMEDIATE_CATCH:
        if (events_ok && e->event == CF_EV_NONE)
            report(b->ld, e->line, e->id,
                   "an intermediate catch event needs a timer or message event definition");
        break;
    case CF_EL_BOUNDARY_EVENT:
        if (events_ok && e->event == CF_EV_NONE)
            report(b->ld, e->line, e->id,
                   "a boundary event needs an error, timer or message event definition");
        if (e->event == CF_EV_ERROR && !e->cancel_activity)
            report(b->ld, e->line, e->id,
                   "an error boundary event always interrupts; cancelActivity=\"false\" is not "
                   "allowed");
        break;
    case CF_EL_SERVICE_TASK:
        parse_delegate(b, e, n);
        break;
    case CF_EL_RECEIVE_TASK:
        resolve_message(b, e, n);
        break;
    case CF_EL_CALL_ACTIVITY:
        parse_call_activity(b, e, n);
        break;
    case CF_EL_SUBPROCESS:
        parse_scope(b, n, e);
        break;
    default:
        break;
    }
}

static void parse_flow(struct build *b, xmlNode *n, struct cf_elem *scope)
{
    const char *id = attr(b->a, n, A_PLAIN, "id");
    int line = line_of(n);
    if (!id || !*id) {
        report(b->ld, line, NULL, "<sequenceFlow> has no id");
        return;
    }
    claim_id(b->ld, id, n);
    struct cf_flow *f = cf__arena_alloc(b->a, sizeof(*f));
    f->id = id;
    f->name = attr(b->a, n, A_PLAIN, "name");
    f->line = line;
    cf__strmap_put(&b->flow_ids, id, f);

    for (const xmlNode *c = n->children; c; c = c->next) {
        if (!is_bpmn(c) || !named(c, "conditionExpression"))
            continue;
        if (find_attr(c, A_CAMUNDA, "resource")) {
            report(b->ld, line_of(c), id,
                   "camunda:resource on a condition is not supported: certflow runs no scripts");
            continue;
        }
        const char *lang = attr(b->tmp, c, A_PLAIN, "language");
        if (lang && *lang && strcasecmp(lang, "juel") != 0) {
            report(b->ld, line_of(c), id,
                   "a condition in language '%s' is a script, which certflow does not run; "
                   "write it as ${...}",
                   lang);
            continue;
        }
        const char *text = text_of(b->tmp, c, true);
        if (!*text) {
            report(b->ld, line_of(c), id, "the conditionExpression is empty");
            continue;
        }
        f->condition = compile(b, text, line_of(c), id, "condition");
    }

    b->flows = grow(b->tmp, b->flows, b->n_flows, &b->cap_flows, sizeof(*b->flows));
    b->flows[b->n_flows++] = (struct pflow){
        .flow = f,
        .source_ref = attr(b->tmp, n, A_PLAIN, "sourceRef"),
        .target_ref = attr(b->tmp, n, A_PLAIN, "targetRef"),
        .scope = scope,
    };
}

static bool in_list(const char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], s) == 0)
            return true;
    }
    return false;
}

static void parse_scope(struct build *b, const xmlNode *scope_node, struct cf_elem *parent)
{
    for (xmlNode *c = scope_node->children; c; c = c->next) {
        /* Elements of other namespaces (diagram interchange, vendor extensions) are not part
         * of the process semantics. */
        if (!is_bpmn(c))
            continue;
        const char *name = (const char *)c->name;
        if (named(c, "sequenceFlow")) {
            parse_flow(b, c, parent);
            continue;
        }
        bool done = false;
        for (size_t i = 0; i < CF_ARRAY_LEN(node_tags) && !done; i++) {
            if (strcmp(node_tags[i].tag, name) == 0) {
                parse_node(b, c, node_tags[i].type, parent);
                done = true;
            }
        }
        for (size_t i = 0; i < CF_ARRAY_LEN(refused_tags) && !done; i++) {
            if (strcmp(refused_tags[i].tag, name) == 0) {
                const char *id = attr(b->tmp, c, A_PLAIN, "id");
                report(b->ld, line_of(c), id, "%s is not supported: %s", name, refused_tags[i].why);
                if (id)
                    cf__strmap_put(&b->refused_ids, id, c);
                done = true;
            }
        }
        if (done || in_list(ignored_tags, CF_ARRAY_LEN(ignored_tags), name))
            continue;
        const char *id = attr(b->tmp, c, A_PLAIN, "id");
        report(b->ld, line_of(c), id, "%s is not a BPMN element certflow supports", name);
        if (id)
            cf__strmap_put(&b->refused_ids, id, c);
    }
}

/* ---- validation of the whole graph ---- */

static void resolve_flows(struct build *b)
{
    struct load *ld = b->ld;
    struct cf__strmap *index = cf__arena_index(b->a);
    for (size_t i = 0; i < b->n_flows; i++) {
        struct pflow *pf = &b->flows[i];
        struct cf_flow *f = pf->flow;
        struct cf_elem *src = NULL, *tgt = NULL;
        if (!pf->source_ref || !*pf->source_ref)
            report(ld, f->line, f->id, "a sequence flow needs a sourceRef");
        else if (!(src = cf__strmap_get(index, pf->source_ref)) &&
                 !cf__strmap_get(&b->refused_ids, pf->source_ref))
            report(ld, f->line, f->id, "sourceRef '%s' names no flow node of this process",
                   pf->source_ref);
        if (!pf->target_ref || !*pf->target_ref)
            report(ld, f->line, f->id, "a sequence flow needs a targetRef");
        else if (!(tgt = cf__strmap_get(index, pf->target_ref)) &&
                 !cf__strmap_get(&b->refused_ids, pf->target_ref))
            report(ld, f->line, f->id, "targetRef '%s' names no flow node of this process",
                   pf->target_ref);
        if (!src || !tgt)
            continue;
        if (src->parent != pf->scope || tgt->parent != pf->scope) {
            report(ld, f->line, f->id,
                   "the sequence flow from '%s' to '%s' crosses a subprocess boundary", src->id,
                   tgt->id);
            continue;
        }
        f->source = src;
        f->target = tgt;
    }
}

static void resolve_boundaries(struct build *b)
{
    struct load *ld = b->ld;
    struct cf__strmap *index = cf__arena_index(b->a);
    for (size_t i = 0; i < b->n_elems; i++) {
        struct cf_elem *e = b->elems[i];
        if (e->type != CF_EL_BOUNDARY_EVENT)
            continue;
        const char *ref = pend_of(b, e)->attached_ref;
        struct cf_elem *act = ref ? cf__strmap_get(index, ref) : NULL;
        if (!ref || !*ref)
            report(ld, e->line, e->id, "a boundary event needs an attachedToRef");
        else if (!act && cf__strmap_get(&b->refused_ids, ref))
            continue;
        else if (!act)
            report(ld, e->line, e->id, "attachedToRef '%s' names no element of this process", ref);
        else if (!cf_elem_is_activity(act))
            report(ld, e->line, e->id,
                   "attachedToRef '%s' is not an activity (it is <%s>); boundary events attach "
                   "to activities",
                   ref, act->tag);
        else if (act->triggered_by_event)
            report(ld, e->line, e->id,
                   "attachedToRef '%s' names an event subprocess, which takes no boundary events",
                   ref);
        else if (act->parent != e->parent)
            report(ld, e->line, e->id,
                   "the boundary event is not in the same (sub)process as activity '%s'", ref);
        else
            e->attached_to = act;
    }
}

/* Fills each element's incoming/outgoing/boundaries arrays, in document order. */
static void link_graph(struct build *b)
{
    size_t n = b->n_elems;
    size_t *n_in = cf__arena_calloc(b->tmp, n + 1, sizeof(size_t));
    size_t *n_out = cf__arena_calloc(b->tmp, n + 1, sizeof(size_t));
    size_t *n_bnd = cf__arena_calloc(b->tmp, n + 1, sizeof(size_t));
    for (size_t i = 0; i < b->n_flows; i++) {
        struct cf_flow *f = b->flows[i].flow;
        if (f->source && f->target) {
            n_out[f->source->index]++;
            n_in[f->target->index]++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (b->elems[i]->attached_to)
            n_bnd[b->elems[i]->attached_to->index]++;
    }
    for (size_t i = 0; i < n; i++) {
        struct cf_elem *e = b->elems[i];
        e->incoming = cf__arena_calloc(b->a, n_in[i], sizeof(*e->incoming));
        e->outgoing = cf__arena_calloc(b->a, n_out[i], sizeof(*e->outgoing));
        e->boundaries = cf__arena_calloc(b->a, n_bnd[i], sizeof(*e->boundaries));
    }
    for (size_t i = 0; i < b->n_flows; i++) {
        struct cf_flow *f = b->flows[i].flow;
        if (f->source && f->target) {
            f->source->outgoing[f->source->n_outgoing++] = f;
            f->target->incoming[f->target->n_incoming++] = f;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct cf_elem *act = b->elems[i]->attached_to;
        if (act)
            act->boundaries[act->n_boundaries++] = b->elems[i];
    }
}

static void check_flows_of(struct build *b, struct cf_elem *e)
{
    struct load *ld = b->ld;
    const char *ref = pend_of(b, e)->default_ref;
    if (ref && *ref) {
        struct cf_flow *f = cf__strmap_get(&b->flow_ids, ref);
        bool outgoing = false;
        for (size_t i = 0; f && i < e->n_outgoing; i++)
            outgoing = outgoing || e->outgoing[i] == f;
        if (!outgoing) {
            report(ld, e->line, e->id, "default flow '%s' is not an outgoing flow of '%s'", ref,
                   e->id);
        } else if (f->condition) {
            report(ld, f->line, f->id,
                   "the default flow of '%s' must not have a condition: it is taken when no "
                   "other condition holds",
                   e->id);
        } else {
            f->is_default = true;
            e->default_flow = f;
        }
    }
    if (e->type == CF_EL_PARALLEL_GATEWAY) {
        for (size_t i = 0; i < e->n_outgoing; i++) {
            if (e->outgoing[i]->condition)
                report(ld, e->outgoing[i]->line, e->outgoing[i]->id,
                       "a condition on a flow leaving parallel gateway '%s' is not allowed: a "
                       "parallel gateway takes every outgoing flow",
                       e->id);
        }
    }
    switch (e->type) {
    case CF_EL_START_EVENT:
        if (e->n_incoming)
            report(ld, e->line, e->id, "a start event cannot have incoming sequence flows");
        break;
    case CF_EL_END_EVENT:
        if (e->n_outgoing)
            report(ld, e->line, e->id, "an end event cannot have outgoing sequence flows");
        break;
    case CF_EL_BOUNDARY_EVENT:
        if (e->n_incoming)
            report(ld, e->line, e->id, "a boundary event cannot have incoming sequence flows");
        if (!e->n_outgoing)
            report(ld, e->line, e->id, "a boundary event needs an outgoing sequence flow");
        break;
    case CF_EL_SUBPROCESS:
        if (e->triggered_by_event && (e->n_incoming || e->n_outgoing))
            report(ld, e->line, e->id,
                   "an event subprocess cannot have incoming or outgoing sequence flows");
        break;
    default:
        break;
    }
}

/* Fills every scope's children and event_subprocesses lists, in document order, in two passes
 * over the elements: a flat file with thousands of subprocesses must not cost a pass each. */
static void fill_scopes(struct build *b)
{
    struct cf_model *m = b->m;
    size_t n = b->n_elems;
    size_t *n_children = cf__arena_calloc(b->tmp, n + 1, sizeof(size_t));
    size_t *n_esp = cf__arena_calloc(b->tmp, n + 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        struct cf_elem *c = b->elems[i];
        size_t k = c->parent ? c->parent->index : n; /* slot n is the process */
        n_children[k]++;
        if (c->type == CF_EL_SUBPROCESS && c->triggered_by_event)
            n_esp[k]++;
    }
    m->children = cf__arena_calloc(b->a, n_children[n], sizeof(*m->children));
    m->event_subprocesses = cf__arena_calloc(b->a, n_esp[n], sizeof(*m->event_subprocesses));
    for (size_t i = 0; i < n; i++) {
        struct cf_elem *e = b->elems[i];
        if (e->type != CF_EL_SUBPROCESS)
            continue;
        e->children = cf__arena_calloc(b->a, n_children[i], sizeof(*e->children));
        e->event_subprocesses = cf__arena_calloc(b->a, n_esp[i], sizeof(*e->event_subprocesses));
    }
    for (size_t i = 0; i < n; i++) {
        struct cf_elem *c = b->elems[i];
        bool esp = c->type == CF_EL_SUBPROCESS && c->triggered_by_event;
        if (c->parent) {
            c->parent->children[c->parent->n_children++] = c;
            if (esp)
                c->parent->event_subprocesses[c->parent->n_event_subprocesses++] = c;
        } else {
            m->children[m->n_children++] = c;
            if (esp)
                m->event_subprocesses[m->n_event_subprocesses++] = c;
        }
    }
}

/* Checks the start events of one scope (`scope` NULL: the process) and finds its none start
 * event. */
static void check_scope(struct build *b, struct cf_elem *scope, struct cf_elem **children,
                        size_t n_children, struct cf_elem **none_start)
{
    struct load *ld = b->ld;
    size_t n_starts = 0, n_none = 0, n_msg_timer = 0;
    bool event_sub = scope && scope->triggered_by_event;
    const char *where = !scope ? "process" : event_sub ? "event subprocess" : "subprocess";
    const char *scope_id = scope ? scope->id : b->m->key;
    int scope_line = scope ? scope->line : b->m->line;
    *none_start = NULL;

    for (size_t i = 0; i < n_children; i++) {
        struct cf_elem *c = children[i];
        if (c->type != CF_EL_START_EVENT)
            continue;
        n_starts++;
        bool refused = pend_of(b, c)->refused;
        if (event_sub) {
            if (c->event == CF_EV_NONE && !refused)
                report(ld, c->line, c->id,
                       "the start event of an event subprocess needs an error, timer or message "
                       "event definition");
            if (c->event == CF_EV_ERROR && !c->cancel_activity)
                report(ld, c->line, c->id,
                       "an error start event always interrupts; isInterrupting=\"false\" is not "
                       "allowed");
            continue;
        }
        if (c->event == CF_EV_NONE) {
            if (refused)
                continue;
            if (n_none++ == 0)
                *none_start = c;
            else
                report(ld, c->line, c->id, "more than one none start event in this %s", where);
        } else if (c->event == CF_EV_ERROR) {
            report(ld, c->line, c->id,
                   "an error start event is only allowed in an event subprocess");
        } else if (scope) {
            report(ld, c->line, c->id,
                   "a %s start event is not allowed in an embedded subprocess; only a none "
                   "start event is",
                   event_kind_name(c->event));
        } else {
            n_msg_timer++;
        }
    }

    if (event_sub) {
        if (n_starts != 1)
            report(ld, scope_line, scope_id,
                   "an event subprocess needs exactly one start event, it has %zu", n_starts);
    } else if (!scope) {
        if (n_none == 0 && n_msg_timer == 0)
            report(ld, scope_line, scope_id,
                   "the process has no none start event (nor a message or timer start event)");
    } else if (n_none == 0) {
        report(ld, scope_line, scope_id, "the subprocess has no none start event");
    }
}

static void finish_model(struct build *b)
{
    struct cf_model *m = b->m;
    m->elements = cf__arena_calloc(b->a, b->n_elems, sizeof(*m->elements));
    if (b->n_elems)
        memcpy(m->elements, b->elems, b->n_elems * sizeof(*m->elements));
    m->n_elements = b->n_elems;
    size_t n_valid = 0;
    for (size_t i = 0; i < b->n_flows; i++)
        n_valid += b->flows[i].flow->source != NULL;
    m->flows = cf__arena_calloc(b->a, n_valid, sizeof(*m->flows));
    for (size_t i = 0; i < b->n_flows; i++) {
        if (b->flows[i].flow->source)
            m->flows[m->n_flows++] = b->flows[i].flow;
    }
    size_t n_starts = 0;
    for (size_t i = 0; i < m->n_children; i++) {
        struct cf_elem *c = m->children[i];
        if (c->type == CF_EL_START_EVENT && (c->event == CF_EV_MESSAGE || c->event == CF_EV_TIMER))
            n_starts++;
    }
    m->start_events = cf__arena_calloc(b->a, n_starts, sizeof(*m->start_events));
    for (size_t i = 0; i < m->n_children; i++) {
        struct cf_elem *c = m->children[i];
        if (c->type == CF_EL_START_EVENT && (c->event == CF_EV_MESSAGE || c->event == CF_EV_TIMER))
            m->start_events[m->n_start_events++] = c;
    }
}

/* Builds the model of one executable <process>. Problems are reported, and the caller drops every
 * model when there are any; until then the ids the model claimed in ld->ids stay valid. */
static struct cf_model *build_process(struct load *ld, xmlNode *proc)
{
    struct build b = {.ld = ld};
    b.a = cf__arena_new();
    b.tmp = cf__arena_new();
    cf__strmap_init(&b.flow_ids);
    cf__strmap_init(&b.refused_ids);
    b.m = cf__arena_alloc(b.a, sizeof(*b.m));
    b.m->arena = b.a;
    b.m->executable = true;
    b.m->line = line_of(proc);
    b.m->key = attr(b.a, proc, A_PLAIN, "id");
    b.m->name = attr(b.a, proc, A_PLAIN, "name");
    if (!b.m->key || !*b.m->key) {
        report(ld, b.m->line, NULL, "<process> has no id");
        b.m->key = "";
    } else {
        claim_id(ld, b.m->key, proc);
    }

    for (const xmlNode *c = proc->children; c; c = c->next) {
        if (is_bpmn(c) && named(c, "extensionElements"))
            parse_extensions(&b, NULL, b.m->key, c);
    }
    parse_scope(&b, proc, NULL);
    resolve_flows(&b);
    resolve_boundaries(&b);
    link_graph(&b);
    for (size_t i = 0; i < b.n_elems; i++)
        check_flows_of(&b, b.elems[i]);
    fill_scopes(&b);
    check_scope(&b, NULL, b.m->children, b.m->n_children, &b.m->none_start);
    for (size_t i = 0; i < b.n_elems; i++) {
        struct cf_elem *e = b.elems[i];
        if (e->type == CF_EL_SUBPROCESS)
            check_scope(&b, e, e->children, e->n_children, &e->none_start);
    }
    finish_model(&b);

    cf__strmap_free(&b.flow_ids);
    cf__strmap_free(&b.refused_ids);
    cf__arena_free(b.tmp);
    return b.m;
}

/* ---- definitions level ---- */

static void parse_definitions(struct load *ld, xmlNode *root)
{
    for (xmlNode *c = root->children; c; c = c->next) {
        if (!is_bpmn(c))
            continue;
        if (named(c, "error")) {
            const char *id = attr(ld->tmp, c, A_PLAIN, "id");
            if (!id || !*id) {
                report(ld, line_of(c), NULL, "<error> has no id");
                continue;
            }
            claim_id(ld, id, c);
            struct def_error *d = cf__arena_alloc(ld->tmp, sizeof(*d));
            d->code = attr(ld->tmp, c, A_PLAIN, "errorCode");
            d->message = attr(ld->tmp, c, A_CAMUNDA, "errorMessage");
            cf__strmap_put(&ld->errors, id, d);
        } else if (named(c, "message")) {
            const char *id = attr(ld->tmp, c, A_PLAIN, "id");
            if (!id || !*id) {
                report(ld, line_of(c), NULL, "<message> has no id");
                continue;
            }
            claim_id(ld, id, c);
            struct def_message *d = cf__arena_alloc(ld->tmp, sizeof(*d));
            d->name = attr(ld->tmp, c, A_PLAIN, "name");
            cf__strmap_put(&ld->messages, id, d);
        }
    }
}

static int build_all(struct load *ld, xmlDocPtr doc, struct cf_model ***out, size_t *n_out)
{
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !is_bpmn(root) || !named(root, "definitions")) {
        report(ld, root ? line_of(root) : 0, NULL,
               "the root element is not <definitions> of the BPMN 2.0 namespace %s", CF_NS_BPMN);
        return CF_EINVALID;
    }
    parse_definitions(ld, root);

    struct cf_model **models = NULL;
    size_t n = 0, n_processes = 0;
    for (xmlNode *c = root->children; c; c = c->next) {
        if (!is_bpmn(c) || !named(c, "process"))
            continue;
        n_processes++;
        /* As Camunda 7 does for new deployments, a process without isExecutable="true" is not
         * deployed (and therefore not checked). */
        const char *exec = attr(ld->tmp, c, A_PLAIN, "isExecutable");
        if (!exec || strcmp(exec, "true") != 0)
            continue;
        models = cf_xrealloc(models, (n + 1) * sizeof(*models));
        models[n++] = build_process(ld, c);
    }
    if (n == 0 && !failed(ld))
        report(ld, line_of(root), NULL,
               n_processes ? "no process is executable; set isExecutable=\"true\" on the process "
                             "to run"
                           : "the file holds no <process>");
    if (failed(ld)) {
        cf_models_free(models, n);
        return CF_EINVALID;
    }
    *out = models;
    *n_out = n;
    return 0;
}

int cf_bpmn_load(const uint8_t *bytes, size_t len, struct cf_model ***models, size_t *n_models,
                 struct cf_diags *diags)
{
    *models = NULL;
    *n_models = 0;
    /* Programs are told to call this at start-up; doing it here too keeps a forgetful caller
     * safe, and it costs one atomic load. */
    cf_bpmn_global_init();

    struct load ld = {.diags = diags, .base = diags->count};
    ld.tmp = cf__arena_new();
    cf__strmap_init(&ld.errors);
    cf__strmap_init(&ld.messages);
    cf__strmap_init(&ld.ids);

    int rc;
    xmlDocPtr doc = parse_xml(&ld, bytes ? bytes : (const uint8_t *)"", bytes ? len : 0);
    if (!doc) {
        rc = CF_EPARSE;
    } else {
        rc = build_all(&ld, doc, models, n_models);
        xmlFreeDoc(doc);
    }
    sort_diags(&ld);

    cf__strmap_free(&ld.errors);
    cf__strmap_free(&ld.messages);
    cf__strmap_free(&ld.ids);
    cf__arena_free(ld.tmp);
    return rc;
}

int cf_bpmn_load_file(const char *path, struct cf_model ***models, size_t *n_models,
                      struct cf_diags *diags)
{
    *models = NULL;
    *n_models = 0;
    uint8_t *bytes = NULL;
    size_t len = 0;
    char err[512];
    /* Our own read, never xmlReadFile(): libxml2 2.9 would transparently gunzip or unxz the
     * file and inflate a small upload into gigabytes. */
    int rc = cf_read_file(path, CF_BPMN_MAX_BYTES, &bytes, &len, err, sizeof(err));
    if (rc != 0) {
        cf_diags_add(diags, 0, NULL, "%s", err);
        return rc;
    }
    rc = cf_bpmn_load(bytes, len, models, n_models, diags);
    free(bytes);
    return rc;
}
