"""The review pages: server-rendered HTML for people, working without JavaScript.

- :mod:`~sluicegate.server.pages.review`: the review page, its decision form, the inbox;
- :mod:`~sluicegate.server.pages.sign_in`: signing in with a ``review`` token, signing out;
- :mod:`~sluicegate.server.pages.auth`: who is looking (link, session, SSO), and the
  signatures of sessions and CSRF tokens;
- :mod:`~sluicegate.server.pages.view`: rendering (templates in ``templates/``);
- :mod:`~sluicegate.server.pages.refused_links`: refused review links, counted into the audit.

Kept free of imports: the server's wiring imports :mod:`refused_links` before the routes
exist.
"""
