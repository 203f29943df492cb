package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PublicConnect returns a warning, or "" for none, when preview roles may
// connect to production's database: in isolation database, each preview
// role logs in to its own database, but PUBLIC's default privileges (a
// database with no ACL, or one that grants PUBLIC CONNECT) let it connect
// to production's as well. It cannot read production's tables (it has no
// privileges on them), yet it may list them and their columns. The
// warning names the statements that close it; it holds no secret. In
// isolation schema every role connects to one database by design, and
// there is nothing to warn about.
func (p *Provider) PublicConnect(ctx context.Context) (string, error) {
	if p.isolation != IsolationDatabase {
		return "", nil
	}
	db := p.prodDB
	if db == "" {
		db = p.adminDB
	}
	var open bool
	// aclexplode over the ACL, or over the default one when datacl is
	// NULL; grantee 0 is PUBLIC.
	err := p.pool.QueryRow(ctx, `SELECT EXISTS (
		SELECT 1 FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
		WHERE d.datname = $1 AND a.grantee = 0 AND a.privilege_type = 'CONNECT')`, db).Scan(&open)
	if err != nil {
		return "", fmt.Errorf("reading production database %s's privileges: %w", db, err)
	}
	if !open {
		return "", nil
	}
	return publicConnectWarning(db, p.prodUser, p.adminUser, db == p.adminDB), nil
}

// publicConnectWarning is PublicConnect's message for database db, whose
// production role is prodUser; admin is previewd's role, which needs
// CONNECT too when it works in db (adminInDB).
func publicConnectWarning(db, prodUser, admin string, adminInDB bool) string {
	q := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	grantees := q(prodUser)
	if adminInDB && admin != prodUser {
		grantees += ", " + q(admin)
	}
	return fmt.Sprintf("preview roles may CONNECT to production's database %s through PUBLIC's default privilege "+
		"(they cannot read its tables, but may list them); close it with: "+
		"REVOKE CONNECT ON DATABASE %s FROM PUBLIC; GRANT CONNECT ON DATABASE %s TO %s;",
		db, q(db), q(db), grantees)
}
