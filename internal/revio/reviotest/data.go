package reviotest

import "slices"

// Customer is a seeded billing customer, as GET /billing/api/v1/customers
// returns it.
type Customer struct {
	CustomerID    int    `json:"customer_id"`
	AccountNumber string `json:"account_number"`
	Name          string `json:"name"`
	Status        string `json:"status"`
	CreatedDate   string `json:"created_date"`
}

// Contact is a seeded billing contact, as GET /billing/api/v1/contacts
// returns it.
type Contact struct {
	ContactID  int    `json:"contact_id"`
	CustomerID int    `json:"customer_id"`
	FirstName  string `json:"first_name"`
	LastName   string `json:"last_name"`
	Email      string `json:"email"`
	Phone      string `json:"phone"`
}

var seedCustomers = []Customer{
	{CustomerID: 1001, AccountNumber: "ACME-1001", Name: "Acme Corporation", Status: "ACTIVE", CreatedDate: "2024-01-15T00:00:00Z"},
	{CustomerID: 1002, AccountNumber: "GLOB-1002", Name: "Globex Inc", Status: "ACTIVE", CreatedDate: "2024-03-02T00:00:00Z"},
	{CustomerID: 1003, AccountNumber: "INIT-1003", Name: "Initech", Status: "SUSPENDED", CreatedDate: "2024-06-20T00:00:00Z"},
}

var seedContacts = []Contact{
	{ContactID: 1, CustomerID: 1001, FirstName: "Ada", LastName: "Lovelace", Email: "ada@acme.example", Phone: "+1-555-0101"},
	{ContactID: 2, CustomerID: 1001, FirstName: "Grace", LastName: "Hopper", Email: "grace@acme.example", Phone: "+1-555-0102"},
	{ContactID: 3, CustomerID: 1002, FirstName: "Alan", LastName: "Turing", Email: "alan@globex.example", Phone: "+1-555-0201"},
	{ContactID: 4, CustomerID: 1003, FirstName: "Peter", LastName: "Gibbons", Email: "peter@initech.example", Phone: "+1-555-0301"},
}

// Customers returns the seeded customers every host sees.
func Customers() []Customer { return slices.Clone(seedCustomers) }

// Contacts returns the seeded contacts every host sees.
func Contacts() []Contact { return slices.Clone(seedContacts) }
