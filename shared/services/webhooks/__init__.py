"""Webhooks: an account's HTTP endpoints told, signed, when its streams change
(design.md, "Notifications and bulk work"). ``events`` names what is told; ``policy``
which URLs may be called; ``signing`` the signature; ``service`` the API's operations;
``dispatch`` turns stream log rows into deliveries; ``delivery`` sends them."""
