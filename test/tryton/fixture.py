"""Build the o2c Tryton fixture database with proteus in direct mode.

Run by test/tryton/setup.sh with Debian's /usr/bin/python3 while no server uses the database:

    /usr/bin/python3 fixture.py <trytond.conf> <database> <fixture.json>

Creates a USD company, this year's fiscal year (move and invoice sequences, monthly periods),
the minimal account chart, a 10 % sales tax, a cash journal and payment method, a direct payment
term, customers (one generous and one low credit limit), storable products with codes, list prices
and stock in the warehouse (one of them scarce), and a restricted integration user. Writes the
names the tests and connector need to <fixture.json>.
"""

import datetime
import json
import os
import sys
from decimal import Decimal

from proteus import Model, Wizard
from proteus import config as pconfig

conf_file, database, out_path = sys.argv[1:4]
config = pconfig.set_trytond(database=database, config_file=conf_file)

# The helpers below follow trytond.modules.*.tests.tools; those modules cannot be imported here
# because importing a tests package switches the pool into test mode.
Currency = Model.get('currency.currency')
CurrencyRate = Model.get('currency.currency.rate')
Sequence = Model.get('ir.sequence')
SequenceStrict = Model.get('ir.sequence.strict')
SequenceType = Model.get('ir.sequence.type')
ModelData = Model.get('ir.model.data')
Account = Model.get('account.account')


def create_company(party):
    User = Model.get('res.user')
    currencies = Currency.find([('code', '=', 'USD')])
    if currencies:
        currency, = currencies
    else:
        currency = Currency(name='U.S. Dollar', symbol='$', code='USD', rounding=Decimal('0.01'))
        currency.save()
        CurrencyRate(date=datetime.date.min, rate=Decimal('1.0'), currency=currency).save()
    company_config = Wizard('company.company.config')
    company_config.execute('company')
    company_config.form.party = party
    company_config.form.currency = currency
    company_config.execute('add')
    config._context = User.get_preferences(True, {})
    company, = Model.get('company.company').find()
    return company


def create_fiscalyear(company, today):
    FiscalYear = Model.get('account.fiscalyear')
    fiscalyear = FiscalYear(name=str(today.year), company=company)
    fiscalyear.start_date = datetime.date(today.year, 1, 1)
    fiscalyear.end_date = datetime.date(today.year, 12, 31)
    move_type, = SequenceType.find([('name', '=', 'Account Move')], limit=1)
    move_seq = Sequence(name=str(today.year), sequence_type=move_type, company=company)
    move_seq.save()
    fiscalyear.post_move_sequence = move_seq
    invoice_type, = SequenceType.find([('name', '=', 'Invoice')], limit=1)
    invoice_seq = SequenceStrict(name=str(today.year), sequence_type=invoice_type, company=company)
    invoice_seq.save()
    seq, = fiscalyear.invoice_sequences
    seq.out_invoice_sequence = invoice_seq
    seq.in_invoice_sequence = invoice_seq
    seq.out_credit_note_sequence = invoice_seq
    seq.in_credit_note_sequence = invoice_seq
    fiscalyear.save()
    return fiscalyear


def get_accounts(company):
    accounts = {}
    for kind in ['receivable', 'payable', 'revenue', 'expense']:
        found = Account.find([('type.%s' % kind, '=', True), ('company', '=', company.id)], limit=1)
        if found:
            accounts[kind] = found[0]
    for key, name in [('cash', 'Main Cash'), ('tax', 'Main Tax')]:
        found = Account.find([('company', '=', company.id), ('name', '=', name)], limit=1)
        if found:
            accounts[key] = found[0]
    return accounts


def create_chart(company):
    AccountTemplate = Model.get('account.account.template')
    data, = ModelData.find([('module', '=', 'account'), ('fs_id', '=', 'account_template_root_en')], limit=1)
    wizard = Wizard('account.create_chart')
    wizard.execute('account')
    wizard.form.account_template = AccountTemplate(data.db_id)
    wizard.form.company = company
    wizard.execute('create_account')
    accounts = get_accounts(company)
    if accounts['receivable'].party_required:
        wizard.form.account_receivable = accounts['receivable']
    if accounts['payable'].party_required:
        wizard.form.account_payable = accounts['payable']
    wizard.execute('create_properties')


def create_tax(rate, company):
    accounts = get_accounts(company)
    tax = Model.get('account.tax')()
    tax.name = tax.description = 'Tax %s' % rate
    tax.type = 'percentage'
    tax.rate = rate
    tax.invoice_account = accounts['tax']
    tax.credit_note_account = accounts['tax']
    return tax


def create_payment_term():
    PaymentTerm = Model.get('account.invoice.payment_term')
    payment_term = PaymentTerm(name='Direct')
    payment_term.lines.new(type='remainder')
    return payment_term


INTEGRATION_LOGIN = 'o2c'
INTEGRATION_PASSWORD = 'o2c-Tk9Wz#Lm4Qv'

today = datetime.date.today()

# Company (USD), with an address so shipments have a from-address.
Party = Model.get('party.party')
company_party = Party(name='o2c Distribution Inc.')
company_party.addresses[0].street = '1 Warehouse Way'
company_party.addresses[0].city = 'Springfield'
company_party.save()
company = create_company(company_party)

# Fiscal year with move and invoice sequences and monthly periods.
fiscalyear = create_fiscalyear(company, today)
fiscalyear.click('create_period')

# Minimal account chart.
create_chart(company)
accounts = get_accounts(company)

# Tax 10 %.
tax = create_tax(Decimal('.10'), company)
tax.name = tax.description = 'Sales tax 10%'
tax.save()

# Cash journal and payment method (the invoice pay wizard needs one).
Journal = Model.get('account.journal')
PaymentMethod = Model.get('account.invoice.payment.method')
cash_journal, = Journal.find([('type', '=', 'cash')])
payment_method = PaymentMethod(name='Cash')
payment_method.journal = cash_journal
payment_method.credit_account = accounts['cash']
payment_method.debit_account = accounts['cash']
payment_method.save()

# Payment term, also the default for new customers.
payment_term = create_payment_term()
payment_term.save()
AccountConfig = Model.get('account.configuration')
account_config = AccountConfig(1)
account_config.default_customer_payment_term = payment_term
account_config.save()

# Account category for products: revenue/expense accounts and the tax.
ProductCategory = Model.get('product.category')
account_category = ProductCategory(name='Goods')
account_category.accounting = True
account_category.account_expense = accounts['expense']
account_category.account_revenue = accounts['revenue']
account_category.customer_taxes.append(tax)
account_category.save()

# Customers.
customers = {
    'good': {'code': 'CUST-ACME', 'name': 'Acme Retail', 'credit_limit': Decimal('1000000.00')},
    'low_credit': {'code': 'CUST-TIGHT', 'name': 'Tight Credit Ltd', 'credit_limit': Decimal('50.00')},
}
for key, spec in customers.items():
    party = Party(name=spec['name'], code=spec['code'])
    address = party.addresses[0]
    address.street = '%s Main Street' % (len(key) * 7)
    address.city = 'Shelbyville'
    party.customer_payment_term = payment_term
    party.credit_limit_amount = spec['credit_limit']
    party.save()
    spec['id'] = party.id
    spec['credit_limit'] = str(spec['credit_limit'])

# Storable products with codes, list prices and stock.
ProductUom = Model.get('product.uom')
ProductTemplate = Model.get('product.template')
unit, = ProductUom.find([('name', '=', 'Unit')])
products = {
    'widget': {'sku': 'WIDGET-001', 'name': 'Widget', 'list_price': '10.00', 'stock': 1000},
    'gadget': {'sku': 'GADGET-002', 'name': 'Gadget', 'list_price': '25.50', 'stock': 500},
    'scarce': {'sku': 'SCARCE-003', 'name': 'Scarce part', 'list_price': '7.25', 'stock': 5},
}
for spec in products.values():
    template = ProductTemplate(name=spec['name'])
    template.default_uom = unit
    template.type = 'goods'
    template.salable = True
    template.list_price = Decimal(spec['list_price'])
    template.account_category = account_category
    product, = template.products
    product.suffix_code = spec['sku']
    product.cost_price = Decimal(spec['list_price']) / 2
    template.save()
    spec['id'] = template.products[0].id

Location = Model.get('stock.location')
Inventory = Model.get('stock.inventory')
warehouse, = Location.find([('code', '=', 'WH')])
storage, = Location.find([('code', '=', 'STO')])
inventory = Inventory(location=storage)
for spec in products.values():
    line = inventory.lines.new(product=spec['id'])
    line.quantity = float(spec['stock'])
    line.expected_quantity = 0.0
inventory.click('confirm')
assert inventory.state == 'done', inventory.state

# Restricted integration user: only the groups the connector needs.
User = Model.get('res.user')
Group = Model.get('res.group')
group_names = [
    'Sales',
    'Stock',
    'Account',
    'Party Administration',
    'Product Administration',
    'Account Credit Limit',
    'Sale Stock Quantity',
]
user = User(name='o2c integration', login=INTEGRATION_LOGIN)
user.password = INTEGRATION_PASSWORD
for name in group_names:
    group, = Group.find([('name', '=', name)])
    user.groups.append(group)
user.companies.append(company)
user.company = company
user.save()

with open(out_path, 'w') as out:
    json.dump(
        {
            'database': database,
            'company': {'id': company.id, 'currency': 'USD'},
            'fiscalYear': str(today.year),
            'admin': {'login': 'admin', 'password': os.environ.get('O2C_TRYTON_ADMIN_PASSWORD', '')},
            'user': {'login': INTEGRATION_LOGIN, 'password': INTEGRATION_PASSWORD, 'groups': group_names},
            'warehouse': {'id': warehouse.id, 'code': 'WH'},
            'paymentMethod': {'id': payment_method.id, 'name': payment_method.name},
            'paymentTerm': {'id': payment_term.id, 'name': payment_term.name},
            'tax': {'name': tax.name, 'rate': '0.10'},
            'customers': customers,
            'products': products,
        },
        out,
        indent=2,
    )
print('fixture written to %s' % out_path)
