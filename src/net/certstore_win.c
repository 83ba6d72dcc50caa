/*
 * The trusted roots of the Windows certificate store, for TLS toward
 * upstreams without ca: (tls.c puts them into OpenSSL's store: OpenSSL
 * 3.0 cannot read the Windows store itself).  The same shape as curl's
 * native CA import and Python's ssl.enum_certificates: enumerate the
 * system stores named ROOT and hand each certificate on, DER-encoded.
 *
 * Two stores: the machine's (CERT_SYSTEM_STORE_LOCAL_MACHINE) and the
 * account's (CERT_SYSTEM_STORE_CURRENT_USER).  On Windows the account's
 * ROOT is a logical store that already shows the machine's roots and
 * those group policy adds, so most roots come twice; they are gathered
 * into one memory store first (CERT_STORE_ADD_USE_EXISTING: one copy of
 * each, by its hash) and each goes to the caller once.  The machine's
 * store is read too because a service account whose profile is not
 * loaded may have no user store to open.
 *
 * Which roots are taken (what CryptoAPI's own chain building for a TLS
 * server would accept of them):
 * - valid for server authentication: CertGetEnhancedKeyUsage merges the
 *   certificate's EKU extension with the EKU property an administrator
 *   sets in certmgr ("enable only the following purposes", "disable all
 *   purposes"); a root whose usages leave out szOID_PKIX_KP_SERVER_AUTH
 *   (a code-signing or e-mail root, a root disabled) is skipped; one with
 *   no usage given anywhere is good for all;
 * - not expired: an expired root can never verify a chain again (OpenSSL
 *   checks the anchor's validity too), so it is left out.  A root not yet
 *   valid is kept: it starts verifying when its time comes, without a
 *   reload.
 * Roots an administrator moved to the Disallowed store are not looked
 * at: Windows distrusts them when it builds chains; this does not.
 *
 * Windows asks the user to confirm a change of the user's ROOT store, so
 * the tests add their CA with tests/win/sltool under wine, whose crypt32
 * asks nothing (and whose ROOT store starts with the host's CA bundle).
 */
#include "win.h"

#include <wincrypt.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* See the top: good for server authentication and not expired at now. */
int sl_win_root_usable(const CERT_CONTEXT *c, const FILETIME *now)
{
	CERT_ENHKEY_USAGE *u;
	DWORD len = 0, i;
	int ok;

	if (CompareFileTime(&c->pCertInfo->NotAfter, now) < 0)
		return 0;
	if (!CertGetEnhancedKeyUsage(c, 0, NULL, &len) || len == 0)
		return 0;
	if ((u = malloc(len)) == NULL)
		return -ENOMEM;
	if (!CertGetEnhancedKeyUsage(c, 0, u, &len)) {
		free(u);
		return 0;
	}
	/* No usage at all: CRYPT_E_NOT_FOUND says none was given (good for
	 * all); anything else says the given ones leave nothing. */
	ok = u->cUsageIdentifier == 0 &&
	     GetLastError() == (DWORD)CRYPT_E_NOT_FOUND;
	for (i = 0; i < u->cUsageIdentifier && !ok; i++)
		ok = strcmp(u->rgpszUsageIdentifier[i],
			    szOID_PKIX_KP_SERVER_AUTH) == 0;
	free(u);
	return ok;
}

/* The usable roots of one system ROOT store into mem.  0 or -errno. */
static int gather(HCERTSTORE mem, DWORD location, const FILETIME *now)
{
	HCERTSTORE st;
	PCCERT_CONTEXT c = NULL;
	int r = 0, ok;

	st = CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, 0,
			   location | CERT_STORE_READONLY_FLAG |
				   CERT_STORE_OPEN_EXISTING_FLAG,
			   L"ROOT");
	if (st == NULL)
		return sl_win_err(GetLastError());
	while ((c = CertEnumCertificatesInStore(st, c)) != NULL) {
		if ((ok = sl_win_root_usable(c, now)) < 0) {
			r = ok;
			CertFreeCertificateContext(c);
			break;
		}
		if (ok && !CertAddCertificateContextToStore(
				  mem, c, CERT_STORE_ADD_USE_EXISTING, NULL)) {
			r = sl_win_err(GetLastError());
			CertFreeCertificateContext(c);
			break;
		}
	}
	CertCloseStore(st, 0);
	return r;
}

int sl_os_trusted_roots(int (*add)(const unsigned char *der, size_t len,
				   void *arg),
			void *arg)
{
	static const DWORD where[] = {CERT_SYSTEM_STORE_LOCAL_MACHINE,
				      CERT_SYSTEM_STORE_CURRENT_USER};
	HCERTSTORE mem;
	PCCERT_CONTEXT c = NULL;
	FILETIME now;
	int r = 0, opened = 0, n = 0;

	mem = CertOpenStore(CERT_STORE_PROV_MEMORY, 0, 0, 0, NULL);
	if (mem == NULL)
		return sl_win_err(GetLastError());
	GetSystemTimeAsFileTime(&now);
	for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
		int g = gather(mem, where[i], &now);

		if (g == 0)
			opened++;
		else if (g == -ENOMEM)
			r = g;
		else if (r == 0)
			r = g; /* kept only if no store opens */
	}
	if (opened > 0 && r != -ENOMEM) {
		r = 0;
		while ((c = CertEnumCertificatesInStore(mem, c)) != NULL) {
			if ((r = add(c->pbCertEncoded, c->cbCertEncoded,
				     arg)) < 0) {
				CertFreeCertificateContext(c);
				break;
			}
			n++;
		}
	}
	CertCloseStore(mem, 0);
	return r < 0 ? r : n;
}
